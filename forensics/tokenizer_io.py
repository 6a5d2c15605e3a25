"""Load BPE tokenizers of every common format into a :class:`~forensics.merges.MergeList`.

``load_merge_list(source)`` accepts

* a Hugging Face ``tokenizer.json`` (model type BPE; byte-level or SentencePiece-converted),
* a folder holding ``tokenizer.json``, else ``vocab.json`` + ``merges.txt`` (GPT-2 "slow"
  pair), else a ``*.tiktoken`` rank file, else a SentencePiece ``tokenizer.model``,
* a ``*.tiktoken`` rank file (``base64(token) rank`` per line),
* a SentencePiece ``.model`` (model type BPE),
* a Hugging Face hub id (``gpt2``, ``org/name``), resolved through ``huggingface_hub``; with
  ``HF_HUB_OFFLINE=1`` only the local cache (``HF_HUB_CACHE`` / ``HF_HOME``) is used.

Merge order of SentencePiece vocabularies
-----------------------------------------
SentencePiece BPE assigns piece ids in training order and scores ``-(id - first)``; Llama 2 and
Mistral then reset the score of their whitespace-only pieces (``▁▁``, ``▁▁▁▁``, ...) to -1e9,
and the HF converter lists merges by score, so those pieces come last in a converted
``tokenizer.json`` although training produced ``▁▁`` first. By default (``sp_order="id"``)
merges are ordered by the produced piece's id, i.e. the training order; ``sp_order="score"``
gives the encoding priority instead (score order, = listed order of a converted file).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from pathlib import Path
from typing import Any

from .merges import (
    MergeList,
    MergeListError,
    PretokenizerSpec,
    UnsupportedTokenizerError,
    byte_alphabet,
    bytes_to_token_str,
    clean_merges,
    merges_from_ranks,
    token_str_to_bytes,
)
from .pretokenize import GPT2_PATTERN, resolve_pattern

__all__ = ["hub_cache_dir", "load_merge_list"]

_SP_SPACE = "▁"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_HUB_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("tokenizer.json",),
    ("vocab.json", "merges.txt"),
    ("tokenizer.model",),
)


def load_merge_list(
    source: str | os.PathLike[str],
    *,
    pattern: str | None = None,
    sp_order: str = "id",
) -> MergeList:
    """Load a BPE tokenizer (file, folder or hub id) as a :class:`MergeList`.

    ``pattern`` overrides the pretokenization of byte-level tokenizers with a tiktoken-style
    regex: a name (``"cl100k"``, ``"o200k"``, ``"r50k"``, ``"p50k"``, ``"gpt2"``) or a raw
    regex. ``sp_order`` (``"id"`` or ``"score"``) orders SentencePiece merges (see module doc).

    Raises :class:`UnsupportedTokenizerError` for non-BPE tokenizers, :class:`MergeListError`
    for files that are not tokenizers, ``FileNotFoundError`` for missing paths / hub ids.
    """
    if sp_order not in ("id", "score"):
        raise ValueError(f"sp_order must be 'id' or 'score', not {sp_order!r}")
    opts = {"pattern": pattern, "sp_order": sp_order}
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_folder(path, name=path.resolve().name, **opts)
    if path.is_file():
        return _load_file(path, name=None, **opts)
    text = os.fspath(source)
    if _HUB_ID.match(text) and not text.endswith((".json", ".model", ".tiktoken", ".txt")):
        return _load_hub(text, **opts)
    raise FileNotFoundError(f"{text}: no such file or folder (and not a Hugging Face hub id)")


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------


def _load_folder(folder: Path, *, name: str, pattern: str | None, sp_order: str) -> MergeList:
    opts = {"name": name, "pattern": pattern, "sp_order": sp_order}
    if (folder / "tokenizer.json").is_file():
        return _load_hf_json(
            folder / "tokenizer.json", _read_json(folder / "tokenizer.json"), **opts
        )
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _load_vocab_merges(folder / "vocab.json", folder / "merges.txt", **opts)
    tiktoken = sorted(folder.glob("*.tiktoken"))
    if len(tiktoken) > 1:
        raise MergeListError(
            f"{folder}: several .tiktoken files ({', '.join(p.name for p in tiktoken)}); "
            "pass one of them"
        )
    if tiktoken:
        return _load_tiktoken(tiktoken[0], **opts)
    if (folder / "tokenizer.model").is_file():
        return _load_sentencepiece(folder / "tokenizer.model", **opts)
    raise MergeListError(
        f"{folder}: no tokenizer found (looked for tokenizer.json, vocab.json + merges.txt, "
        "*.tiktoken, tokenizer.model)"
    )


def _load_file(path: Path, *, name: str | None, pattern: str | None, sp_order: str) -> MergeList:
    opts = {"pattern": pattern, "sp_order": sp_order}
    fname = path.name
    if fname.endswith(".tiktoken"):
        return _load_tiktoken(path, name=name or path.stem, **opts)
    if fname.endswith(".model"):
        return _load_sentencepiece(path, name=name or _folder_name(path), **opts)
    if fname == "merges.txt":
        vocab = path.with_name("vocab.json")
        if not vocab.is_file():
            raise MergeListError(f"{path}: merges.txt needs a vocab.json next to it")
        return _load_vocab_merges(vocab, path, name=name or _folder_name(path), **opts)
    head = _read_bytes(path)[:4096]
    if fname.endswith(".json") or head.lstrip()[:1] in (b"{", b"["):
        obj = _read_json(path)
        if isinstance(obj, dict) and "model" in obj:
            return _load_hf_json(path, obj, name=name or _folder_name(path), **opts)
        if fname == "vocab.json" and path.with_name("merges.txt").is_file():
            return _load_vocab_merges(
                path, path.with_name("merges.txt"), name=name or _folder_name(path), **opts
            )
        raise MergeListError(
            f"{path}: JSON without a 'model' section: not a Hugging Face tokenizer.json"
        )
    if _looks_like_tiktoken(head):
        return _load_tiktoken(path, name=name or path.stem, **opts)
    proto = _parse_sentencepiece(path, strict=False)
    if proto is not None:
        return _load_sentencepiece(path, name=name or _folder_name(path), proto=proto, **opts)
    raise MergeListError(
        f"{path}: not a recognised tokenizer file (expected a tokenizer.json, vocab.json + "
        "merges.txt, a .tiktoken rank file or a SentencePiece .model)"
    )


def _folder_name(path: Path) -> str:
    return path.resolve().parent.name or path.stem


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise MergeListError(f"{path}: cannot read: {e}") from e


def _read_json(path: Path) -> Any:
    data = _read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MergeListError(f"{path}: not valid UTF-8 JSON: {e}") from e


def _resolve_override(pattern: str | None, path: Path) -> PretokenizerSpec | None:
    if pattern is None:
        return None
    try:
        pname, pat = resolve_pattern(pattern)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return PretokenizerSpec(kind="regex", pattern=pat, pattern_name=pname, keep_newline=True)


# --------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json
# --------------------------------------------------------------------------------------------


def _components(node: Any) -> list[dict]:
    """A normalizer / pre-tokenizer / decoder JSON node flattened through Sequences."""
    if not isinstance(node, dict):
        return []
    out = [node]
    for key in ("normalizers", "pretokenizers", "pre_tokenizers", "decoders"):
        for child in node.get(key) or []:
            out.extend(_components(child))
    return out


def _has_type(node: Any, typ: str) -> bool:
    return any(c.get("type") == typ for c in _components(node))


def _pattern_string(p: Any) -> str | None:
    if isinstance(p, dict):
        return p.get("String")
    return p if isinstance(p, str) else None


def _is_sentencepiece_style(obj: dict) -> bool:
    norm, pre, dec = obj.get("normalizer"), obj.get("pre_tokenizer"), obj.get("decoder")
    if _has_type(pre, "Metaspace") or _has_type(dec, "Metaspace"):
        return True
    for c in _components(norm):
        if c.get("type") == "Prepend" and c.get("prepend") == _SP_SPACE:
            return True
        if c.get("type") == "Replace" and c.get("content") == _SP_SPACE:
            return True
    for c in _components(dec):
        if c.get("type") == "Replace" and _pattern_string(c.get("pattern")) == _SP_SPACE:
            return True
    return bool(obj["model"].get("byte_fallback"))


def _hf_spec_json(obj: dict, *, byte_level: bool) -> str:
    """A tokenizers.Tokenizer JSON with the target's normalizer + pre-tokenizer, empty BPE."""
    from tokenizers import Tokenizer

    norm, pre = obj.get("normalizer"), obj.get("pre_tokenizer")
    if byte_level and not (_has_type(pre, "ByteLevel") or _has_type(norm, "ByteLevel")):
        # byte-level model whose ByteLevel step sits only in the decoder: map bytes ourselves
        bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}
        bl["use_regex"] = False
        pre = bl if pre is None else {"type": "Sequence", "pretokenizers": [pre, bl]}
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": norm,
        "pre_tokenizer": pre,
        "post_processor": None,
        "decoder": None,
        "model": {"type": "BPE", "vocab": {}, "merges": []},
    }
    return Tokenizer.from_str(json.dumps(spec)).to_str()


def _model_type(model: Any) -> str | None:
    if not isinstance(model, dict):
        return None
    if model.get("type"):
        return str(model["type"])
    if "merges" in model:
        return "BPE"
    if isinstance(model.get("vocab"), list):
        return "Unigram"
    if "continuing_subword_prefix" in model or "max_input_chars_per_word" in model:
        return "WordPiece"
    if "vocab" in model:
        return "WordLevel"
    return None


def _parse_hf_merges(raw: Any, path: Path) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise MergeListError(f"{path}: model.merges is not a list")
    out = []
    for i, m in enumerate(raw, start=1):
        parts = m.split(" ") if isinstance(m, str) else m
        if (
            not isinstance(parts, list)
            or len(parts) != 2
            or not all(isinstance(p, str) for p in parts)
        ):
            raise MergeListError(f"{path}: merge {i} {m!r} is not 'a b' or [a, b]")
        out.append((parts[0], parts[1]))
    return out


def _load_hf_json(
    path: Path, obj: Any, *, name: str, pattern: str | None, sp_order: str
) -> MergeList:
    if not isinstance(obj, dict) or "model" not in obj:
        raise MergeListError(
            f"{path}: JSON without a 'model' section: not a Hugging Face tokenizer.json"
        )
    model = obj["model"]
    typ = _model_type(model)
    if typ is None:
        raise MergeListError(f"{path}: cannot tell the model type of this tokenizer.json")
    if typ != "BPE":
        raise UnsupportedTokenizerError(
            f"{path}: model type {typ} is not BPE; only BPE merge lists can be analysed"
        )
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise UnsupportedTokenizerError(
                f"{path}: BPE with {key}={model[key]!r} is not supported"
            )
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise MergeListError(f"{path}: model.vocab is not a token → id mapping")
    merges = _parse_hf_merges(model.get("merges"), path)

    byte_level = any(
        _has_type(obj.get(k), "ByteLevel") for k in ("pre_tokenizer", "decoder", "normalizer")
    )
    sp_style = not byte_level and _is_sentencepiece_style(obj)
    try:
        hf_json = _hf_spec_json(obj, byte_level=byte_level)
    except Exception as e:  # tokenizers raises plain Exception on bad components
        raise MergeListError(f"{path}: cannot rebuild its normalizer/pre-tokenizer: {e}") from e

    if byte_level:
        try:
            pairs = [(token_str_to_bytes(a), token_str_to_bytes(b)) for a, b in merges]
        except MergeListError as e:
            raise MergeListError(
                f"{path}: byte-level tokenizer with a non byte-level merge: {e}"
            ) from None
        alphabet = byte_alphabet()
        kept, dropped = _clean(pairs, alphabet, None, path)
        spec = _resolve_override(pattern, path) or PretokenizerSpec(
            kind="hf", hf_json=hf_json, keep_newline=True
        )
        base = "byte"
    else:
        if pattern is not None:
            raise ValueError(f"{path}: pattern= only applies to byte-level tokenizers")
        special = {
            t.get("content")
            for t in obj.get("added_tokens") or []
            if isinstance(t, dict) and t.get("special")
        }
        alphabet = frozenset(k.encode("utf-8") for k in vocab if len(k) == 1 and k not in special)
        pairs = [(a.encode("utf-8"), b.encode("utf-8")) for a, b in merges]
        ids = None
        if sp_style and sp_order == "id":
            ids = {k.encode("utf-8"): int(i) for k, i in vocab.items()}
        kept, dropped = _clean(pairs, alphabet, ids, path)
        base = "char"
        if sp_style:
            ws_only = any(len(k) >= 2 and set(k) == {_SP_SPACE} for k in vocab)
            spec = PretokenizerSpec(
                kind="hf",
                hf_json=hf_json,
                keep_newline=False,
                sp_words=True,
                allow_whitespace_only_pieces=ws_only,
            )
        else:
            spec = PretokenizerSpec(kind="hf", hf_json=hf_json, keep_newline=True)
    return MergeList(
        merges=tuple(kept),
        base=base,
        alphabet=alphabet,
        pretokenizer=spec,
        name=name,
        source_format="tokenizer.json",
        dropped_redundant=dropped,
    )


def _clean(pairs, alphabet, ids, path: Path):
    try:
        return clean_merges(pairs, alphabet, ids)
    except MergeListError as e:
        raise MergeListError(f"{path}: {e}") from None


# --------------------------------------------------------------------------------------------
# GPT-2 vocab.json + merges.txt
# --------------------------------------------------------------------------------------------


def _load_vocab_merges(
    vocab_path: Path, merges_path: Path, *, name: str, pattern: str | None, sp_order: str
) -> MergeList:
    del sp_order
    vocab = _read_json(vocab_path)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise MergeListError(f"{vocab_path}: not a token → id mapping")
    try:
        text = _read_bytes(merges_path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MergeListError(f"{merges_path}: not UTF-8 text: {e}") from e
    pairs: list[tuple[bytes, bytes]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise MergeListError(f"{merges_path}: line {lineno} {line!r} is not 'a b'")
        if any(p.endswith("</w>") for p in parts):
            raise UnsupportedTokenizerError(
                f"{merges_path}: end-of-word suffix '</w>' merges are not supported"
            )
        try:
            pairs.append((token_str_to_bytes(parts[0]), token_str_to_bytes(parts[1])))
        except MergeListError as e:
            raise UnsupportedTokenizerError(
                f"{merges_path}: line {lineno}: not a GPT-2 byte-level merge list: {e}"
            ) from None
    missing = [a + b for a, b in pairs if bytes_to_token_str(a + b) not in vocab]
    if missing:
        raise MergeListError(
            f"{merges_path}: merged token {missing[0]!r} is not in {vocab_path.name}; "
            "the two files do not belong together"
        )
    kept, dropped = _clean(pairs, byte_alphabet(), None, merges_path)
    spec = _resolve_override(pattern, merges_path) or PretokenizerSpec(
        kind="regex", pattern=GPT2_PATTERN, pattern_name="r50k", keep_newline=True
    )
    return MergeList(
        merges=tuple(kept),
        base="byte",
        alphabet=byte_alphabet(),
        pretokenizer=spec,
        name=name,
        source_format="vocab+merges",
        dropped_redundant=dropped,
    )


# --------------------------------------------------------------------------------------------
# tiktoken
# --------------------------------------------------------------------------------------------

_TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/=]+ \d+\s*$")


def _looks_like_tiktoken(head: bytes) -> bool:
    lines = [ln for ln in head.split(b"\n")[:5] if ln.strip()]
    return bool(lines) and all(_TIKTOKEN_LINE.match(ln) for ln in lines[:-1] or lines)


def _infer_tiktoken_pattern(path: Path, n: int) -> tuple[str, str]:
    stem = path.name.lower()
    for key in ("cl100k", "o200k", "p50k", "r50k", "gpt2"):
        if key in stem:
            return resolve_pattern(key)
    if n == 100256:
        return resolve_pattern("cl100k")
    if 50256 <= n <= 50257:
        return resolve_pattern("r50k")
    if 50258 <= n <= 50281:
        return resolve_pattern("p50k")
    if 199_990 <= n <= 200_100:
        return resolve_pattern("o200k")
    raise MergeListError(
        f"{path}: cannot tell which tiktoken encoding this is ({n:,} ranks; known: cl100k "
        "100,256, r50k/p50k ~50,256-50,280, o200k ~200k); pass pattern='cl100k' | 'o200k' | "
        "'r50k' | 'p50k' or a regex"
    )


def _load_tiktoken(path: Path, *, name: str, pattern: str | None, sp_order: str) -> MergeList:
    del sp_order
    data = _read_bytes(path)
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise MergeListError(f"{path}: line {lineno} is not 'base64(token) rank'")
        try:
            tok = base64.b64decode(parts[0], validate=True)
        except (binascii.Error, ValueError) as e:
            raise MergeListError(f"{path}: line {lineno}: bad base64: {e}") from None
        rank = int(parts[1])
        if tok in ranks or rank in seen_ranks:
            raise MergeListError(f"{path}: line {lineno}: duplicate token or rank")
        ranks[tok] = rank
        seen_ranks.add(rank)
    if not ranks:
        raise MergeListError(f"{path}: empty tiktoken rank file")
    try:
        merges = merges_from_ranks(ranks)
    except MergeListError as e:
        raise MergeListError(f"{path}: {e}") from None
    if pattern is not None:
        spec = _resolve_override(pattern, path)
    else:
        pname, pat = _infer_tiktoken_pattern(path, len(ranks))
        spec = PretokenizerSpec(kind="regex", pattern=pat, pattern_name=pname, keep_newline=True)
    return MergeList(
        merges=tuple(merges),
        base="byte",
        alphabet=byte_alphabet(),
        pretokenizer=spec,
        name=name,
        source_format="tiktoken",
    )


# --------------------------------------------------------------------------------------------
# SentencePiece .model
# --------------------------------------------------------------------------------------------


def _parse_sentencepiece(path: Path, *, strict: bool):
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    try:
        proto.ParseFromString(_read_bytes(path))
    except (DecodeError, ValueError, RuntimeError) as e:
        if strict:
            raise MergeListError(f"{path}: not a SentencePiece model: {e}") from e
        return None
    if (
        not proto.pieces
        or not proto.HasField("trainer_spec")
        or not any(p.piece for p in proto.pieces)
    ):
        if strict:
            raise MergeListError(f"{path}: not a SentencePiece model (no pieces / trainer spec)")
        return None
    return proto


def _load_sentencepiece(
    path: Path, *, name: str, pattern: str | None, sp_order: str, proto=None
) -> MergeList:
    from sentencepiece import sentencepiece_model_pb2 as pb

    if pattern is not None:
        raise ValueError(f"{path}: pattern= only applies to byte-level tokenizers")
    if proto is None:
        proto = _parse_sentencepiece(path, strict=True)
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    mtype = pb.TrainerSpec.ModelType.Name(ts.model_type)
    if ts.model_type != pb.TrainerSpec.BPE:
        raise UnsupportedTokenizerError(
            f"{path}: SentencePiece model type {mtype} is not BPE; only BPE merge lists can be "
            "analysed"
        )
    if ts.treat_whitespace_as_suffix:
        raise UnsupportedTokenizerError(f"{path}: treat_whitespace_as_suffix is not supported")
    normal = pb.ModelProto.SentencePiece.NORMAL
    pieces = [(i, p.piece, p.score) for i, p in enumerate(proto.pieces) if p.type == normal]
    vocab = {p: i for i, p, _ in pieces}
    alphabet = frozenset(p.encode("utf-8") for _, p, _ in pieces if len(p) == 1)
    if sp_order == "id":
        multi = sorted((i, p) for i, p, _ in pieces if len(p) >= 2)
    else:
        multi = [(i, p) for i, p, _ in sorted(pieces, key=lambda x: (-x[2], x[0])) if len(p) >= 2]
    candidates: list[tuple[bytes, bytes]] = []
    for i, p in multi:
        found = False
        for k in range(1, len(p)):
            if p[:k] in vocab and p[k:] in vocab:
                candidates.append((p[:k].encode("utf-8"), p[k:].encode("utf-8")))
                found = True
        if not found:
            raise MergeListError(
                f"{path}: piece {p!r} (id {i}) is not the concatenation of two pieces"
            )
    order = {p.encode("utf-8"): rank for rank, (_, p) in enumerate(multi)}
    kept, dropped = _clean(candidates, alphabet, order, path)
    hf_json = None
    if ns.precompiled_charsmap:
        from tokenizers import Tokenizer, normalizers
        from tokenizers.models import BPE

        t = Tokenizer(BPE())
        t.normalizer = normalizers.Precompiled(ns.precompiled_charsmap)
        hf_json = t.to_str()
    spec = PretokenizerSpec(
        kind="sentencepiece",
        hf_json=hf_json,
        add_dummy_prefix=ns.add_dummy_prefix,
        remove_extra_whitespaces=ns.remove_extra_whitespaces,
        keep_newline=False,
        allow_whitespace_only_pieces=ts.allow_whitespace_only_pieces,
        split_by_whitespace=ts.split_by_whitespace,
    )
    return MergeList(
        merges=tuple(kept),
        base="char",
        alphabet=alphabet,
        pretokenizer=spec,
        name=name,
        source_format="sentencepiece",
        dropped_redundant=dropped,
    )


# --------------------------------------------------------------------------------------------
# Hugging Face hub
# --------------------------------------------------------------------------------------------

_TRUE = {"1", "ON", "YES", "TRUE"}


def _hub_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in _TRUE:
            return True
    return False


def hub_cache_dir() -> Path:
    """The hub cache folder, read from the environment at call time (``HF_HUB_CACHE``,
    ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub, else ``~/.cache/huggingface/hub``)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()
    return base / "huggingface" / "hub"


def _from_cache(repo_id: str, cache_dir: Path) -> list[Path] | None:
    from huggingface_hub import try_to_load_from_cache

    for files in _HUB_CANDIDATES:
        found = []
        for f in files:
            p = try_to_load_from_cache(repo_id, f, cache_dir=cache_dir)
            if not isinstance(p, str):
                break
            found.append(Path(p))
        else:
            return found
    return None


def _download(repo_id: str, cache_dir: Path) -> list[Path] | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    for files in _HUB_CANDIDATES:
        try:
            return [Path(hf_hub_download(repo_id, f, cache_dir=cache_dir)) for f in files]
        except EntryNotFoundError as e:
            if isinstance(e, LocalEntryNotFoundError):  # no network, not cached: not a 404
                raise
            continue  # the repo has no such file: try the next format
    return None


def _load_hub(repo_id: str, *, pattern: str | None, sp_order: str) -> MergeList:
    """Cached snapshot first (no network, reproducible), else download (unless offline)."""
    cache_dir = hub_cache_dir()
    wanted = "tokenizer.json, vocab.json + merges.txt or tokenizer.model"
    paths = _from_cache(repo_id, cache_dir)
    if paths is None and _hub_offline():
        raise FileNotFoundError(
            f"Hugging Face hub id {repo_id!r} is not in the local cache {cache_dir} (no "
            f"{wanted} under models--{repo_id.replace('/', '--')}) and HF_HUB_OFFLINE is "
            "set, so it cannot be downloaded"
        )
    if paths is None:
        try:
            paths = _download(repo_id, cache_dir)
        except Exception as e:  # network down, unknown or gated repo, ...
            raise FileNotFoundError(
                f"Hugging Face hub id {repo_id!r}: not in the local cache {cache_dir} and the "
                f"download failed ({type(e).__name__}: {e})"
            ) from e
        if paths is None:
            raise FileNotFoundError(f"Hugging Face hub id {repo_id!r} has none of {wanted}")
    opts = {"name": repo_id, "pattern": pattern, "sp_order": sp_order}
    if paths[0].name == "vocab.json":
        return _load_vocab_merges(paths[0], paths[1], **opts)
    return _load_file(paths[0], **opts)

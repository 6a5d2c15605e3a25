"""Vocabulary extension of an existing byte-level BPE (``mixtrace bpe extend``).

The way Llama 3 extended cl100k, and the opposite of ``add_tokens``: new merges are learned by
continuing BPE training on new text with the base's merges pre-applied (every word is first
tokenized by the base), and they are appended to the base's merge list with new vocabulary
entries, so the new tokens are produced by the BPE model itself, inside words, and every
merge of the base keeps its rank.

By default (``script="hangul"``) only pairs with a side holding a Hangul-syllable lead byte
(UTF-8 ``0xEA``-``0xED``, U+A000-U+DFFF: the Hangul syllables block and its neighbours) may
merge. Text without such bytes — English, code — then meets none of the new merges and
encodes exactly as with the base; :func:`extend_tokenizer` checks it on the text it is given,
and checks that every new token is reachable (the model tokenizes the token's own string into
that one token).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .count import BPEInputError, PretokenCounter, count_shards
from .trainer import BPETrainingError, continue_training

__all__ = ["SCRIPTS", "ExtensionResult", "extend_tokenizer", "load_base_tokenizer"]

#: byte sets that mark a token as belonging to the extension's script (None: no restriction)
SCRIPTS: dict[str, frozenset[int] | None] = {
    "hangul": frozenset(range(0xEA, 0xEE)),
    "any": None,
}


@dataclass
class ExtensionResult:
    tokenizer_json: str
    new_tokens: list[str]
    report: dict[str, Any]


def _byte_decoder() -> dict[str, int]:
    from forensics.merges import bytes_to_unicode

    return {c: b for b, c in bytes_to_unicode().items()}


def _has_byte_level(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel":
            return True
        return any(_has_byte_level(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_byte_level(v) for v in node)
    return False


def load_base_tokenizer(path: str | Path) -> dict[str, Any]:
    """A byte-level BPE as a ``tokenizer.json`` dict: a ``tokenizer.json`` file, a folder
    holding one, or a GPT-2-style folder (``vocab.json`` + ``merges.txt``). Anything else —
    another model type, a SentencePiece-style BPE without byte-level pre-tokenizer, missing
    byte symbols — is refused with the reason."""
    from tokenizers import Tokenizer, models

    from forensics.training import byte_level_tokenizer

    p = Path(path)
    if p.is_dir() and (p / "tokenizer.json").is_file():
        p = p / "tokenizer.json"
    if p.is_dir():
        vocab, merges = p / "vocab.json", p / "merges.txt"
        if not (vocab.is_file() and merges.is_file()):
            raise BPEInputError(f"{path}: no tokenizer.json, nor vocab.json + merges.txt")
        try:
            model = models.BPE.from_file(str(vocab), str(merges))
        except Exception as e:
            raise BPEInputError(f"{path}: vocab.json/merges.txt do not load ({e})") from None
        obj = json.loads(byte_level_tokenizer("gpt2", model).to_str())
    else:
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
            Tokenizer.from_str(json.dumps(obj))
        except FileNotFoundError:
            raise BPEInputError(f"{path}: no such file") from None
        except Exception as e:
            raise BPEInputError(f"{path}: not a loadable tokenizer.json ({e})") from None
    model = obj.get("model") or {}
    if model.get("type", "BPE") != "BPE" or "merges" not in model:
        raise BPEInputError(
            f"{path}: model type {model.get('type')!r} is not BPE; extension needs a byte-level BPE"
        )
    if not _has_byte_level(obj.get("pre_tokenizer")):
        raise BPEInputError(
            f"{path}: not a byte-level BPE (no ByteLevel pre-tokenizer; a SentencePiece-style "
            "BPE works on characters and needs SentencePiece's own trainer)"
        )
    missing = set(_byte_decoder()) - set(model.get("vocab", {}))
    if missing:
        raise BPEInputError(
            f"{path}: the vocabulary lacks {len(missing)} of the 256 byte symbols: not a "
            "byte-level BPE"
        )
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise BPEInputError(f"{path}: BPE with subword prefixes/suffixes is not supported")
    return obj


def _marks(tokens: Sequence[str], script: str) -> np.ndarray | None:
    lead = SCRIPTS[script]
    if lead is None:
        return None
    dec = _byte_decoder()
    return np.array([any(dec.get(ch, -1) in lead for ch in t) for t in tokens], dtype=np.int8)


def _merge_entries(merges: list, new: Sequence[tuple[str, str]]) -> list:
    """New merges in the base file's own format (``[a, b]`` lists or ``"a b"`` strings)."""
    if merges and isinstance(merges[0], str):
        return [*merges, *(f"{a} {b}" for a, b in new)]
    return [*merges, *([a, b] for a, b in new)]


def extend_tokenizer(
    base: str | Path | Mapping[str, Any],
    shards: str | Sequence[str],
    add: int,
    *,
    script: str = "hangul",
    mix: str | Mapping[str, float] | None = None,
    mix_column: str = "lang",
    min_frequency: int = 2,
    check_texts: Sequence[str] = (),
    out: str | None = None,
    address: str | None = None,
    use_ray: bool = True,
) -> ExtensionResult:
    """Add up to ``add`` tokens to the byte-level BPE ``base``, learned on ``shards``.

    ``check_texts``: text that must encode exactly as with the base (e.g. English held out);
    the report gives, per check, whether it does. ``min_frequency``: a new merge needs at
    least this count (2: no token from a single occurrence)."""
    from tokenizers import Tokenizer

    if script not in SCRIPTS:
        raise BPEInputError(f"script must be one of {', '.join(SCRIPTS)}, not {script!r}")
    if add < 1:
        raise BPEInputError(f"--add must be at least 1, got {add}")
    t0 = time.perf_counter()
    obj = dict(base) if isinstance(base, Mapping) else load_base_tokenizer(base)
    base_json = json.dumps(obj, ensure_ascii=False)
    base_tok = Tokenizer.from_str(base_json)
    counter = PretokenCounter("base", tokenizer_json=base_json)
    table = count_shards(
        shards,
        mix=mix,
        mix_column=mix_column,
        address=address,
        use_ray=use_ray,
        counter=counter,
    )
    t_count = time.perf_counter() - t0

    t1 = time.perf_counter()
    vocab: dict[str, int] = dict(obj["model"]["vocab"])
    size = max([*vocab.values(), *(a["id"] for a in obj.get("added_tokens", []))]) + 1
    tokens = [""] * size  # ids without a vocabulary entry (added tokens) hold no string
    for t, i in vocab.items():
        tokens[i] = t
    marks = _marks(tokens, script)
    words, counts = table.words_and_counts()
    if marks is not None:  # words without a marked byte cannot take part in a new merge
        lead = SCRIPTS[script]
        dec = _byte_decoder()
        keep = [i for i, w in enumerate(words) if any(dec.get(ch, -1) in lead for ch in w)]
        words = [words[i] for i in keep]
        counts = counts[keep]
    if not words:
        raise BPEInputError(
            f"{shards}: no text of the extension's script ({script}) to learn merges from"
        )
    # the base's merges pre-applied: its own BPE model on each distinct word
    bare = {**obj, "normalizer": None, "pre_tokenizer": None, "post_processor": None}
    model_only = Tokenizer.from_str(json.dumps({**bare, "added_tokens": []}))
    encoded = [e.ids for e in model_only.encode_batch(words, add_special_tokens=False)]
    try:
        merges, new_tokens = continue_training(
            tokens, encoded, counts, add, mark=marks, min_frequency=min_frequency
        )
    except BPETrainingError as e:
        raise BPEInputError(str(e)) from None
    t_train = time.perf_counter() - t1

    ext = json.loads(base_json)
    for k, t in enumerate(new_tokens):
        ext["model"]["vocab"][t] = size + k
    ext["model"]["merges"] = _merge_entries(ext["model"]["merges"], merges)
    ext_json = json.dumps(ext, ensure_ascii=False)
    ext_tok = Tokenizer.from_str(ext_json)

    # every new token is reachable: BPE on the token's own string gives that one token
    unreachable = [
        t
        for k, t in enumerate(new_tokens)
        if [x.id for x in ext_tok.model.tokenize(t)] != [size + k]
    ]
    checks = []
    for text in check_texts:
        a = base_tok.encode(text, add_special_tokens=False).ids
        b = ext_tok.encode(text, add_special_tokens=False).ids
        checks.append({"chars": len(text), "tokens": len(a), "identical": a == b})
    report = {
        "base_vocab_size": base_tok.get_vocab_size(),
        "added_tokens": len(new_tokens),
        "requested": add,
        "script": script,
        "extended_vocab_size": ext_tok.get_vocab_size(),
        "unreachable_new_tokens": unreachable,
        "unchanged_checks": checks,
        "counting": table.stats,
        "timings": {"count": t_count, "train": t_train, "total": time.perf_counter() - t0},
    }
    if len(new_tokens) < add:
        report["warning"] = (
            f"the text gives only {len(new_tokens)} new tokens of count ≥ {min_frequency}"
        )
    if unreachable:
        raise BPEInputError(
            f"{len(unreachable)} new token(s) are not reachable by the model, e.g. "
            f"{unreachable[:3]}: the extension was not written"
        )
    if out:
        import fsspec

        fs, root = fsspec.core.url_to_fs(out)
        fs.makedirs(root, exist_ok=True)
        with fs.open(f"{root}/tokenizer.json", "w") as fh:
            fh.write(ext_json)
        with fs.open(f"{root}/extend_report.json", "w") as fh:
            json.dump(report, fh, indent=2, ensure_ascii=False)
    return ExtensionResult(ext_json, new_tokens, report)

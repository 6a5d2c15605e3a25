"""Loading BPE tokenizers of every format into a MergeList (real files in ../shared/tokenizers)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from forensics.merges import (
    MergeList,
    MergeListError,
    UnsupportedTokenizerError,
    byte_alphabet,
    bytes_to_token_str,
    bytes_to_unicode,
    clean_merges,
    merges_from_ranks,
    token_str_to_bytes,
    validate_merges,
)
from forensics.pretokenize import CL100K_PATTERN, GPT2_PATTERN, O200K_PATTERN, Pretokenizer
from forensics.tokenizer_io import _infer_tiktoken_pattern, load_merge_list

SAMPLE = (
    "The quick brown fox jumps over the lazy dog. It's 2024; don't   panic!\n"
    "def merge(a, b):\n    return a + b  # indentation\n\n"
    "Ünïcödé, naïve café — “quotes” and €100.\n"
    "    x = [1, 2, 3]\t# tab\n"
)


@pytest.fixture(scope="session")
def gpt2(shared_tokenizers) -> MergeList:
    return load_merge_list(shared_tokenizers / "gpt2")


@pytest.fixture(scope="session")
def cl100k_ranks(shared_tokenizers) -> dict[bytes, int]:
    ranks = {}
    for line in (
        (shared_tokenizers / "cl100k_base" / "cl100k_base.tiktoken").read_bytes().splitlines()
    ):
        tok, rank = line.split()
        ranks[base64.b64decode(tok)] = int(rank)
    return ranks


@pytest.fixture(scope="session")
def cl100k(shared_tokenizers) -> MergeList:
    return load_merge_list(shared_tokenizers / "cl100k_base")


@pytest.fixture(scope="session")
def llama2(shared_tokenizers) -> MergeList:
    return load_merge_list(shared_tokenizers / "llama2" / "tokenizer.json")


@pytest.fixture(scope="session")
def mistral(shared_tokenizers) -> MergeList:
    return load_merge_list(shared_tokenizers / "mistral-7b-v0.1" / "tokenizer.model")


def _hf_bpe(ml: MergeList):
    """A plain tokenizers BPE applying exactly ml's merges to whole words (symbol space)."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    def sym(t: bytes) -> str:
        return bytes_to_token_str(t) if ml.base == "byte" else t.decode("utf-8")

    vocab = {sym(a): i for i, a in enumerate(sorted(ml.alphabet))}
    for a, b in ml.merges:
        vocab[sym(a + b)] = len(vocab)
    merges = [(sym(a), sym(b)) for a, b in ml.merges]
    return Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False))


def _rank_bpe(word: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """tiktoken's algorithm, written the slow obvious way."""
    parts = [word[i : i + 1] for i in range(len(word))]
    while len(parts) > 1:
        cands = [
            (ranks[parts[i] + parts[i + 1]], i)
            for i in range(len(parts) - 1)
            if parts[i] + parts[i + 1] in ranks
        ]
        if not cands:
            break
        _, i = min(cands)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


# --------------------------------------------------------------------------------------------
# the four shared tokenizers
# --------------------------------------------------------------------------------------------


def test_all_shared_tokenizers_load(gpt2, cl100k, llama2, mistral):
    for ml, fmt, base, n in [
        (gpt2, "vocab+merges", "byte", 50_000),
        (cl100k, "tiktoken", "byte", 100_000),
        (llama2, "tokenizer.json", "char", 28_446),
        (mistral, "sentencepiece", "char", 28_446),
    ]:
        assert ml.source_format == fmt
        assert ml.base == base
        assert len(ml.merges) == n
        validate_merges(ml.merges, ml.alphabet)
    assert gpt2.alphabet == cl100k.alphabet == byte_alphabet()
    assert gpt2.name == "gpt2" and cl100k.name == "cl100k_base" and llama2.name == "llama2"


def test_cl100k_merges_from_ranks(cl100k, cl100k_ranks):
    assert len(cl100k_ranks) == 100_256
    assert len(cl100k.merges) == 100_000
    by_rank = {r: t for t, r in cl100k_ranks.items()}
    assert sorted(by_rank[r] for r in range(256)) == sorted(byte_alphabet())
    for r, (a, b) in enumerate(cl100k.merges, start=1):
        rank = 256 + r - 1
        assert a + b == by_rank[rank]
        assert cl100k_ranks[a] < rank and cl100k_ranks[b] < rank
    # rank 256 is "  " (forced split), rank 257 is 4 spaces: its only sub-token below 257 is "  "
    assert cl100k.merges[:4] == ((b" ", b" "), (b"  ", b"  "), (b"i", b"n"), (b" ", b"t"))
    pre = cl100k.pretokenizer
    assert pre.kind == "regex" and pre.pattern_name == "cl100k" and pre.pattern == CL100K_PATTERN


def test_cl100k_merges_reproduce_tiktoken_encoding(cl100k, cl100k_ranks):
    tok = _hf_bpe(cl100k)
    words = Pretokenizer.from_spec(cl100k.pretokenizer).pretokenize(SAMPLE * 3)
    got = [e.tokens for e in tok.encode_batch(words, add_special_tokens=False)]
    expected = [
        [bytes_to_token_str(p) for p in _rank_bpe(token_str_to_bytes(w), cl100k_ranks)]
        for w in words
    ]
    assert got == expected


def test_gpt2_merges_txt_equals_merges_from_ranks(shared_tokenizers, gpt2):
    vocab = json.loads((shared_tokenizers / "gpt2" / "vocab.json").read_text(encoding="utf-8"))
    ranks = {token_str_to_bytes(k): i for k, i in vocab.items() if k != "<|endoftext|>"}
    assert len(ranks) == 50_256
    assert merges_from_ranks(ranks) == list(gpt2.merges)
    assert gpt2.merges[:3] == ((b" ", b"t"), (b" ", b"a"), (b"h", b"e"))
    assert gpt2.pretokenizer.kind == "regex" and gpt2.pretokenizer.pattern == GPT2_PATTERN


def test_llama2_redundant_merges_cleaned(shared_tokenizers, llama2):
    raw = json.loads((shared_tokenizers / "llama2" / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(raw["model"]["merges"]) == 58_980
    assert len(llama2.merges) == 28_446
    assert llama2.dropped_redundant == 58_980 - 28_446
    # every token produced once, parts produced earlier
    validate_merges(llama2.merges, llama2.alphabet)
    assert len(set(llama2.tokens)) == len(llama2.merges)
    # alphabet: single characters, no byte-fallback pieces, no specials
    assert len(llama2.alphabet) == 3_295
    assert all(len(a.decode("utf-8")) == 1 for a in llama2.alphabet)
    assert "▁".encode() in llama2.alphabet
    # vocabulary-id (training) order: the whitespace pieces come where training made them
    vocab = raw["model"]["vocab"]
    ids = [vocab[t.decode("utf-8")] for t in llama2.tokens]
    assert ids == sorted(ids)
    first = [t.decode() for t in llama2.tokens[:5]]
    assert first == ["▁▁", "▁▁▁▁", "▁t", "in", "er"]
    # the BPE replay picks the split training merged ("ou" exists before "▁o")
    token_at = {t: i for i, t in enumerate(llama2.tokens)}
    assert llama2.merges[token_at["▁out".encode()]] == ("▁".encode(), b"out")
    spec = llama2.pretokenizer
    assert spec.kind == "hf" and spec.sp_words and not spec.keep_newline
    assert spec.allow_whitespace_only_pieces


def test_llama2_cleaned_list_encodes_like_the_original(shared_tokenizers):
    from tokenizers import Tokenizer

    path = shared_tokenizers / "llama2" / "tokenizer.json"
    ml = load_merge_list(path, sp_order="score")
    assert len(ml.merges) == 28_446
    assert ml.tokens[-2:] == ("▁▁▁▁▁▁▁".encode(), "▁▁▁▁▁▁▁▁▁▁▁".encode())
    original = Tokenizer.from_file(str(path))
    cleaned = json.loads(original.to_str())
    cleaned["model"]["merges"] = [[a.decode(), b.decode()] for a, b in ml.merges]
    cleaned = Tokenizer.from_str(json.dumps(cleaned))
    lines = [*SAMPLE.split("\n"), "a    b", "  leading", "ab  "]
    for a, b in zip(original.encode_batch(lines), cleaned.encode_batch(lines), strict=True):
        assert a.ids == b.ids


def test_mistral_sentencepiece_model(shared_tokenizers, mistral):
    import sentencepiece as spm

    assert len(mistral.merges) == 28_446
    assert [t.decode() for t in mistral.tokens[:5]] == ["▁▁", "▁▁▁▁", "▁t", "in", "er"]
    spec = mistral.pretokenizer
    assert spec.kind == "sentencepiece" and not spec.keep_newline
    assert spec.add_dummy_prefix and not spec.remove_extra_whitespaces
    assert spec.allow_whitespace_only_pieces
    # in score (encoding) order, the merges reproduce SentencePiece's own encoding
    path = shared_tokenizers / "mistral-7b-v0.1" / "tokenizer.model"
    ml = load_merge_list(path, sp_order="score")
    assert set(ml.merges) == set(mistral.merges)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    tok = _hf_bpe(ml)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    alphabet = {a.decode() for a in ml.alphabet}
    lines = [ln for ln in pre.lines(SAMPLE * 2) if set(ln.replace(" ", "▁")) <= alphabet]
    assert len(lines) >= 6
    for line in lines:
        words = pre.pretokenize(line)
        got = [t for e in tok.encode_batch(words, add_special_tokens=False) for t in e.tokens]
        assert got == sp.encode(line, out_type=str), line


# --------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------


def test_bytes_to_unicode_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"
    assert table[0] == "Ā" and table[0xA0] == "ł" and table[0xAD] == "Ń"
    from tokenizers import pre_tokenizers

    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert token_str_to_bytes("Ġthe") == b" the"
    assert bytes_to_token_str(bytes(range(256))) == "".join(table[b] for b in range(256))
    with pytest.raises(MergeListError, match="not a byte-level token"):
        token_str_to_bytes("▁x")


def test_merges_from_ranks_small():
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"ab": 3, b"bc": 4, b"abc": 5}
    assert merges_from_ranks(ranks) == [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c")]
    # BPE stops at a | bc | d: fall back to the two-way split with the lowest ranks
    ranks = {b"a": 0, b"b": 1, b"c": 2, b"d": 3, b"bc": 4, b"ab": 5, b"cd": 6, b"abcd": 7}
    assert merges_from_ranks(ranks)[-1] == (b"ab", b"cd")
    with pytest.raises(MergeListError, match="abc"):
        merges_from_ranks({b"a": 0, b"b": 1, b"c": 2, b"abc": 3})


def test_clean_merges_replay_and_redundancy():
    alpha = [b"a", b"b", b"c", b"d"]
    merges = [
        (b"b", b"c"),
        (b"a", b"b"),
        (b"c", b"d"),
        (b"a", b"bc"),
        (b"ab", b"cd"),  # parts produced earliest, but "abcd" never segments as ab|cd
        (b"abc", b"d"),
    ]
    kept, dropped = clean_merges(merges, alpha)
    assert kept == [(b"b", b"c"), (b"a", b"b"), (b"c", b"d"), (b"a", b"bc"), (b"abc", b"d")]
    assert dropped == 1
    # a redundant split through a never-produced token is just dropped
    kept, dropped = clean_merges([(b"a", b"b"), (b"ab", b"c"), (b"a", b"bc")], alpha)
    assert kept == [(b"a", b"b"), (b"ab", b"c")] and dropped == 1
    # token ids reorder; a split whose part comes later in id order is redundant
    ids = {b"ab": 10, b"bc": 5, b"abc": 11}
    kept, _ = clean_merges([(b"a", b"b"), (b"a", b"bc"), (b"b", b"c"), (b"ab", b"c")], alpha, ids)
    assert kept == [(b"b", b"c"), (b"a", b"b"), (b"a", b"bc")]


def test_clean_merges_errors():
    alpha = [b"a", b"b", b"c"]
    with pytest.raises(MergeListError, match=r"merge 2 .*b'x'.* never produced"):
        clean_merges([(b"a", b"b"), (b"ab", b"x")], alpha)
    with pytest.raises(MergeListError, match=r"merge 1 .*only produced after"):
        clean_merges([(b"ab", b"c"), (b"a", b"b")], alpha)
    with pytest.raises(MergeListError, match="no vocabulary id"):
        clean_merges([(b"a", b"b")], alpha, {b"bc": 3})
    with pytest.raises(MergeListError, match="merge 2"):
        validate_merges([(b"a", b"b"), (b"a", b"b")], alpha)


# --------------------------------------------------------------------------------------------
# formats, errors and the hub
# --------------------------------------------------------------------------------------------


def _train_bytelevel(tmp: Path, name: str = "tokenizer.json") -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel()]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([SAMPLE] * 20, trainer=trainer)
    path = tmp / name
    tok.save(str(path))
    return path


def test_trained_bytelevel_tokenizer_json(tmp_path):
    path = _train_bytelevel(tmp_path)
    raw = json.loads(path.read_text(encoding="utf-8"))["model"]["merges"]
    ml = load_merge_list(path)
    assert ml.base == "byte" and ml.source_format == "tokenizer.json" and ml.dropped_redundant == 0
    assert [(bytes_to_token_str(a), bytes_to_token_str(b)) for a, b in ml.merges] == [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in raw
    ]
    assert ml.pretokenizer.kind == "hf" and ml.pretokenizer.keep_newline
    # "a b" string merges (older files) load the same
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in raw]
    old = tmp_path / "old" / "tokenizer.json"
    old.parent.mkdir()
    old.write_text(json.dumps(data), encoding="utf-8")
    assert load_merge_list(old.parent).merges == ml.merges
    # pattern override gives a tiktoken-style spec
    assert load_merge_list(path, pattern="cl100k").pretokenizer.pattern_name == "cl100k"


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram", "WordLevel"])
def test_non_bpe_tokenizer_json_unsupported(tmp_path, kind):
    from tokenizers import Tokenizer, models

    model = {
        "WordPiece": lambda: models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"),
        "Unigram": lambda: models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], 0),
        "WordLevel": lambda: models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"),
    }[kind]()
    path = tmp_path / "tokenizer.json"
    Tokenizer(model).save(str(path))
    with pytest.raises(UnsupportedTokenizerError, match=kind) as err:
        load_merge_list(path)
    assert str(path) in str(err.value)


def test_unigram_sentencepiece_unsupported(shared_tokenizers, tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString((shared_tokenizers / "mistral-7b-v0.1" / "tokenizer.model").read_bytes())
    proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    path = tmp_path / "uni.model"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(UnsupportedTokenizerError, match="UNIGRAM"):
        load_merge_list(path)


@pytest.mark.parametrize(
    ("fname", "content", "match"),
    [
        ("garbage.bin", bytes(range(256)) * 7 + b"\xff\xfe\x00junk", "not a recognised"),
        ("random.json", b'{"hello": [1, 2, 3]}', "JSON without a 'model'"),
        ("notes.txt", b"just some text\nnothing to see\n", "not a recognised"),
        ("broken.json", b'{"model": ', "not valid UTF-8 JSON"),
        ("bad.tiktoken", b"IQ== 0\nnot-base64!! 1\n", "line 2"),
        ("bad.model", b"\x00\x01garbage", "not a SentencePiece model"),
    ],
)
def test_garbage_raises_merge_list_error(tmp_path, fname, content, match):
    path = tmp_path / fname
    path.write_bytes(content)
    with pytest.raises(MergeListError, match=match) as err:
        load_merge_list(path)
    assert str(path) in str(err.value)


def test_missing_paths(tmp_path):
    with pytest.raises(MergeListError, match="no tokenizer found"):
        load_merge_list(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_merge_list(tmp_path / "nope" / "tokenizer.json")


def test_tiktoken_pattern_inference_and_override(tmp_path):
    lines = [base64.b64encode(bytes([b])) + b" " + str(b).encode() for b in range(256)]
    lines += [base64.b64encode(b"ab") + b" 256", base64.b64encode(b"abc") + b" 257"]
    path = tmp_path / "tiny.tiktoken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(MergeListError, match="pattern="):
        load_merge_list(path)
    ml = load_merge_list(path, pattern="gpt2")
    assert ml.merges == ((b"a", b"b"), (b"ab", b"c"))
    assert ml.pretokenizer.pattern_name == "r50k"
    assert load_merge_list(path, pattern=r"\S+|\s+").pretokenizer.pattern_name == "custom"
    with pytest.raises(ValueError, match="neither a known name"):
        load_merge_list(path, pattern="(unbalanced")
    assert _infer_tiktoken_pattern(Path("x.tiktoken"), 100_256)[0] == "cl100k"
    assert _infer_tiktoken_pattern(Path("x.tiktoken"), 50_256)[0] == "r50k"
    assert _infer_tiktoken_pattern(Path("x.tiktoken"), 50_280)[0] == "p50k"
    assert _infer_tiktoken_pattern(Path("x.tiktoken"), 199_998) == ("o200k", O200K_PATTERN)
    assert _infer_tiktoken_pattern(Path("o200k_base.tiktoken"), 10)[0] == "o200k"


def _hub_repo(cache: Path, repo: str, files: dict[str, Path]) -> None:
    root = cache / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy(src, snap / name)


def test_hub_cache_offline(tmp_path, monkeypatch, shared_tokenizers):
    cache = tmp_path / "hub"
    _hub_repo(cache, "org/bpe", {"tokenizer.json": _train_bytelevel(tmp_path)})
    _hub_repo(
        cache,
        "gpt2",
        {n: shared_tokenizers / "gpt2" / n for n in ("vocab.json", "merges.txt")},
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ml = load_merge_list("org/bpe")
    assert ml.name == "org/bpe" and ml.source_format == "tokenizer.json" and ml.base == "byte"
    assert ml.merges == load_merge_list(tmp_path / "tokenizer.json").merges
    ml = load_merge_list("gpt2")
    assert ml.source_format == "vocab+merges" and len(ml.merges) == 50_000
    with pytest.raises(FileNotFoundError) as err:
        load_merge_list("org/not-there")
    assert "org/not-there" in str(err.value) and str(cache) in str(err.value)
    assert "HF_HUB_OFFLINE" in str(err.value)
    # a cached snapshot is used without touching the network even when not offline
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert load_merge_list("org/bpe").name == "org/bpe"


def test_trained_sentencepiece_bpe_with_nfkc(tmp_path):
    """A tiny SentencePiece BPE (nmt_nfkc normalization) trained here: merges and pretokens
    reproduce SentencePiece's own encoding."""
    import io

    import sentencepiece as spm

    lines = (SAMPLE * 20 + "Ｆｕｌｌ　ｗｉｄｔｈ ① text\n" * 20).split("\n")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=150,
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        minloglevel=2,
    )
    path = tmp_path / "tiny.model"
    path.write_bytes(model.getvalue())
    ml = load_merge_list(path)
    assert ml.source_format == "sentencepiece" and ml.base == "char" and len(ml.merges) > 50
    assert ml.pretokenizer.hf_json is not None  # the precompiled charsmap
    assert ml.pretokenizer.remove_extra_whitespaces
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tok = _hf_bpe(ml)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    alphabet = {a.decode() for a in ml.alphabet}
    checked = 0
    for line in ["Ｆｕｌｌ　ｗｉｄｔｈ ① text", *SAMPLE.split("\n")]:
        words = pre.pretokenize(line)
        if not set("".join(words)) <= alphabet:
            continue
        got = [t for e in tok.encode_batch(words, add_special_tokens=False) for t in e.tokens]
        assert got == sp.encode(line, out_type=str), line
        checked += 1
    assert checked >= 4
    assert pre.pretokenize("  Ｆｕｌｌ　ｗｉｄｔｈ  ") == ["▁Full", "▁width"]

"""Pretokenization matching the target tokenizer, in the BPE model's symbol space."""

from __future__ import annotations

import pytest

from forensics.merges import PretokenizerSpec, token_str_to_bytes
from forensics.pretokenize import (
    CL100K_PATTERN,
    GPT2_PATTERN,
    O200K_PATTERN,
    Pretokenizer,
    resolve_pattern,
    to_byte_level,
)
from forensics.tokenizer_io import load_merge_list

TEXT = (
    "Hello world123 don't  stop!!\n\n  x\n"
    "def f(a, b):\n\treturn a+b  # ok\r\n"
    "Ünïcödé — “quotes”, 日本語のテキスト, 한국어 텍스트 12345!\n"
    "\x00\x7f odd bytes \u00ad soft hyphen   \n   trailing   "
)


def _regex(pattern: str) -> Pretokenizer:
    return Pretokenizer.from_spec(PretokenizerSpec(kind="regex", pattern=pattern))


def _plain(pieces: list[str]) -> list[str]:
    return [token_str_to_bytes(p).decode("utf-8") for p in pieces]


def test_cl100k_split_known_pieces():
    pieces = _plain(_regex(CL100K_PATTERN).pretokenize("Hello world123 don't  stop!!\n\n  x"))
    # "  stop": \s+(?!\S) backs off to one space; "!!" swallows the newlines ([\r\n]*)
    assert pieces == ["Hello", " world", "123", " don", "'t", " ", " stop", "!!\n\n", " ", " x"]
    pieces = _plain(_regex(CL100K_PATTERN).pretokenize("HE'S 12345 a\n\n  \nb"))
    # case-insensitive contractions, digits in groups of three, \s*[\r\n] takes the blank run
    assert pieces == ["HE", "'S", " ", "123", "45", " a", "\n\n  \n", "b"]


def test_gpt2_and_o200k_split_known_pieces():
    pieces = _plain(_regex(GPT2_PATTERN).pretokenize("Hello world123 don't  stop!!\n\n  x"))
    assert pieces == ["Hello", " world", "123", " don", "'t", " ", " stop", "!!", "\n\n ", " x"]
    pieces = _plain(_regex(O200K_PATTERN).pretokenize("camelCase HELLOworld don't 12345"))
    assert pieces == ["camel", "Case", " HELLOworld", " don't", " ", "123", "45"]


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, CL100K_PATTERN, O200K_PATTERN])
def test_regex_pretokens_round_trip_bytes(pattern):
    pieces = _regex(pattern).pretokenize(TEXT)
    assert b"".join(token_str_to_bytes(p) for p in pieces) == TEXT.encode("utf-8")
    assert all(pieces)


def test_shared_byte_level_round_trip(shared_tokenizers):
    for name in ("gpt2", "cl100k_base"):
        pre = Pretokenizer.from_spec(load_merge_list(shared_tokenizers / name).pretokenizer)
        pieces = pre.pretokenize_many(pre.lines(TEXT))
        assert b"".join(token_str_to_bytes(p) for p in pieces) == TEXT.encode("utf-8")


def test_gpt2_regex_matches_hf_bytelevel():
    from tokenizers import pre_tokenizers

    hf = pre_tokenizers.ByteLevel(add_prefix_space=False)
    expected = [p for p, _ in hf.pre_tokenize_str(TEXT)]
    assert _regex(GPT2_PATTERN).pretokenize(TEXT) == expected


def test_cl100k_regex_matches_onig_split():
    """Same pattern, other regex engine (tokenizers' Oniguruma): identical pieces."""
    from tokenizers import Regex, pre_tokenizers

    hf = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    expected = [p for p, _ in hf.pre_tokenize_str(TEXT)]
    assert _regex(CL100K_PATTERN).pretokenize(TEXT) == expected


def test_trained_tokenizer_json_matches_its_pre_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel()]
    )
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False)
    tok.train_from_iterator([TEXT] * 5, trainer=trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    ml = load_merge_list(path)
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    assert pre.keep_newline
    loaded = Tokenizer.from_file(str(path))
    for line in pre.lines(TEXT * 2):
        expected = [
            p
            for p, _ in loaded.pre_tokenizer.pre_tokenize_str(loaded.normalizer.normalize_str(line))
        ]
        assert pre.pretokenize(line) == expected
    # ByteLevel(add_prefix_space=True) after Digits prefixes every piece
    assert pre.pretokenize_many(["a b", "", "12"]) == ["Ġa", "Ġb", "Ġ1", "Ġ2"]


def test_sentencepiece_spec():
    def sp(**kw) -> Pretokenizer:
        return Pretokenizer.from_spec(PretokenizerSpec(kind="sentencepiece", **kw))

    p = sp(add_dummy_prefix=True, remove_extra_whitespaces=False, keep_newline=False)
    assert not p.keep_newline
    assert p.pretokenize("Hello  world") == ["▁Hello", "▁", "▁world"]
    assert p.pretokenize(" x") == ["▁", "▁x"]
    assert p.pretokenize("") == []
    p = sp(remove_extra_whitespaces=False, allow_whitespace_only_pieces=True)
    assert p.pretokenize("   foo bar  ") == ["▁▁▁▁foo", "▁bar", "▁▁"]
    p = sp(add_dummy_prefix=False, remove_extra_whitespaces=True)
    assert p.pretokenize("  Hello   world  ") == ["Hello", "▁world"]
    assert p.pretokenize("   ") == []
    p = sp(split_by_whitespace=False)
    assert p.pretokenize("a b") == ["▁a▁b"]


def test_mistral_and_llama2_pretokens(shared_tokenizers):
    mistral = Pretokenizer.from_spec(
        load_merge_list(shared_tokenizers / "mistral-7b-v0.1" / "tokenizer.model").pretokenizer
    )
    llama = Pretokenizer.from_spec(load_merge_list(shared_tokenizers / "llama2").pretokenizer)
    assert mistral.pretokenize("Hello world, hi") == ["▁Hello", "▁world,", "▁hi"]
    assert mistral.pretokenize("    return x") == ["▁▁▁▁▁return", "▁x"]
    assert mistral.lines("a\nb\n") == ["a", "b"]
    for line in llama.lines(TEXT):
        assert llama.pretokenize(line) == mistral.pretokenize(line)
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(shared_tokenizers / "llama2" / "tokenizer.json"))
    line = "  def f(x):  return x"
    assert "".join(llama.pretokenize(line)) == raw.normalizer.normalize_str(line)
    whole = PretokenizerSpec(**{**llama.spec.__dict__, "sp_words": False})
    assert Pretokenizer.from_spec(whole).pretokenize(line) == [raw.normalizer.normalize_str(line)]


def test_lines_and_helpers():
    p = _regex(CL100K_PATTERN)
    assert p.lines("a\nb\r\n\nc") == ["a\n", "b\r\n", "\n", "c"]
    assert p.pretokenize_many(p.lines("a\nb")) == ["a", "Ċ", "b"]
    assert to_byte_level("a b\n") == "aĠbĊ" and to_byte_level("é") == "Ã©"
    assert resolve_pattern("cl100k_base") == ("cl100k", CL100K_PATTERN)
    assert resolve_pattern("GPT2") == ("r50k", GPT2_PATTERN)
    with pytest.raises(ValueError):
        PretokenizerSpec(kind="bpe")
    with pytest.raises(ValueError):
        PretokenizerSpec(kind="regex")


def test_pickle_round_trip(shared_tokenizers):
    import pickle

    for source in ("cl100k_base", "llama2", "mistral-7b-v0.1"):
        pre = Pretokenizer.from_spec(load_merge_list(shared_tokenizers / source).pretokenizer)
        clone = pickle.loads(pickle.dumps(pre))
        assert clone.spec == pre.spec
        assert clone.pretokenize(TEXT) == pre.pretokenize(TEXT)

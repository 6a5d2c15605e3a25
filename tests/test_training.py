"""Controlled BPE training and mixture sampling (no Ray)."""

from __future__ import annotations

import json

import pytest

from forensics.merges import token_str_to_bytes
from forensics.tokenizer_io import load_merge_list
from forensics.training import mixture_sample, split_lines, train_bpe

TEXT = (
    "The quick brown fox jumps over the lazy dog.\n\n"
    "Numbers 12345 and 67890 appear here.\n\n\n"
    "def foo(x):\n    return x + 1\n\n"
)


def _merges(tokenizer_json: str) -> list[tuple[bytes, bytes]]:
    raw = json.loads(tokenizer_json)["model"]["merges"]
    pairs = [m.split(" ") if isinstance(m, str) else m for m in raw]
    return [(token_str_to_bytes(a), token_str_to_bytes(b)) for a, b in pairs]


def test_split_lines_only_on_newline():
    assert split_lines("a\nb\r\nc\u2028d\n\ne") == ["a\n", "b\r\n", "c\u2028d\n", "\n", "e"]
    assert split_lines("") == []
    assert "".join(split_lines(TEXT)) == TEXT


def test_train_bpe_feeds_lines(tmp_path):
    tok = train_bpe([TEXT] * 50, 400)
    merges = _merges(tok)
    assert 0 < len(merges) <= 400 - 256
    # line by line: a newline always ends its line, so no token continues after a "\n"
    # (trained on whole documents, "\n\n" would be the most frequent whitespace pair)
    for a, b in merges:
        assert b"\n" not in (a + b)[:-1], (a, b)
    # digits are split one by one: no merge joins two digits
    for a, b in merges:
        assert not (a[-1:].isdigit() and b[:1].isdigit()), (a, b)
    # the file loads as a byte-level tokenizer with the trained merges, and its
    # pretokenizer keeps newlines (line mode)
    path = tmp_path / "tokenizer.json"
    path.write_text(tok, encoding="utf-8")
    ml = load_merge_list(path)
    assert ml.base == "byte" and list(ml.merges) == merges
    assert ml.pretokenizer.keep_newline


def test_train_bpe_gpt2_pretokenizer_merges_digits():
    merges = _merges(train_bpe(["12345 12345 12345\n"] * 20, 300, pretokenizer="gpt2"))
    assert any(a.isdigit() and b.isdigit() for a, b in merges)
    with pytest.raises(ValueError, match="pretokenizer"):
        train_bpe(["x"], 300, pretokenizer="wordpiece")
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(["x"], 100)


def test_train_bpe_is_deterministic():
    assert train_bpe([TEXT] * 10, 350) == train_bpe([TEXT] * 10, 350)


def test_mixture_sample_whole_documents_and_true_bytes():
    docs = {
        "a": ["a" * 100] * 10,  # 1000 bytes
        "b": ["é" * 50] * 10,  # 100 bytes each (2 bytes per char), 1000 in all
        "c": ["c" * 300, "c" * 10],
    }
    texts, true = mixture_sample(docs, {"a": 0.5, "b": 0.25, "c": 0.25}, 1000)
    # a: target 500 -> five documents; b: target 250 -> 200 or 300: 300 is as close as 200,
    # the crossing document is kept only when strictly closer -> 200; c: target 250 -> the
    # first document (300) is closer than nothing (0)
    assert true == {"a": 500, "b": 200, "c": 300}
    assert texts == ["a" * 100] * 5 + ["é" * 50] * 2 + ["c" * 300]
    # a category that runs out gives what it has
    _, true = mixture_sample(docs, {"a": 0.9, "c": 0.1}, 10_000)
    assert true == {"a": 1000, "c": 310}
    # a tiny share may get no document
    _, true = mixture_sample(docs, {"a": 0.99, "c": 0.01}, 1000)
    assert true["c"] == 0
    with pytest.raises(KeyError):
        mixture_sample(docs, {"zz": 1.0}, 100)
    with pytest.raises(ValueError):
        mixture_sample(docs, {"a": 0.0}, 100)


def _sample_mixture() -> list[str]:
    from pathlib import Path

    from forensics.categories import sample_text
    from pipeline.readers import ReadErrors

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    docs = {
        c: sample_text(str(sample / f"{c}.jsonl.gz"), sample_bytes=60_000, errors=ReadErrors())
        for c in ("ko", "ru", "code-python")
    }
    texts, _ = mixture_sample(docs, {"ko": 0.3, "ru": 0.3, "code-python": 0.4}, 150_000)
    return texts


@pytest.mark.parametrize("trainer", ["bytelevel-digits", "gpt2"])
def test_continue_bpe_reproduces_the_hf_trainer(tmp_path, trainer):
    """Continuing from HF's first K merges on the same text gives HF's next merges, in order
    (ties included): the extension trainer is BPE training itself, not an approximation."""
    from collections import Counter

    from forensics.pretokenize import Pretokenizer
    from forensics.training import continue_bpe

    texts = _sample_mixture()
    path = tmp_path / "tok.json"
    path.write_text(train_bpe(texts, 256 + 1500, pretokenizer=trainer), encoding="utf-8")
    ml = load_merge_list(str(path))
    pre = Pretokenizer.from_spec(ml.pretokenizer)
    words = Counter(w for d in texts for w in pre.pretokenize_document(d))
    for k in (0, 700):
        new = continue_bpe(ml.merges[:k], ml.base, ml.alphabet, words, 1500 - k)
        assert new == list(ml.merges[k:1500])
    # no pair left: stops early instead of inventing merges
    assert len(continue_bpe([], "byte", None, {"ab": 3}, 10)) == 1

"""The vectorised filters and language ID against their slow, obvious references.

``pipeline.textstats`` / the ``fast`` implementation of the Gopher and FineWeb filters must give
datatrove's decisions and reasons, and the same signal values as datatrove's own helper
functions; the batch language identifier must give py3langid's labels (and its probabilities up
to float32 rounding). Real documents: a sample of every file of ``../shared/corpus`` and all of
``data/sample``, raw and normalised, plus hand-made edge cases.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.config import load_config
from pipeline.filters import FineWebQuality, GopherQuality, GopherRepetition
from pipeline.langid import LanguageID, batch_classifier, load_identifier
from pipeline.normalize import Normalize
from pipeline.textstats import NGrams, Words, splitlines

ROOT = Path(__file__).resolve().parents[1]

EDGE_CASES = [
    "",
    " ",
    "\n\n",
    "word",
    "two words",
    "  leading and trailing  \n",
    "a\r\nb\rc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j\u2029k\n",
    "line one\n\n\nline one\n\nline one\n",
    "• bullet\n• bullet two\n- dash\n  - indented dash\nnormal line",
    "ends with dots...\nand an ellipsis…\nnot this one\nthis one ...   ",
    "#tag #tag2 #tag3 text text text",
    "....... ...... .....",
    "ALL CAPS TEXT FOR THE IDENTIFIER",
    "12345 67890 !!! ??? ...",
    "ㅋㅋㅋㅋㅋ ㅎㅎㅎ 진짜 ㅋㅋㅋㅋㅋ ㅎㅎㅎ 진짜 ㅋㅋㅋㅋㅋ ㅎㅎㅎ 진짜",
    # the same 5-gram concatenation with different word boundaries ("ab c" / "a bc")
    "p q r s ab c d e f g h i j k l m n o p q r s a bc d e f g h",
    "x y z w " * 40,
    "the be to of and that have with " * 3,
    "\u3000전각\u3000공백\u00a0과\u2003여러\u2009공백 " * 5,
    "Kawi \U00011f04\U00011f05 letters and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 words",
    # long enough to reach the later Gopher quality checks
    "\n".join(f"• item number {i} of a long list with several more words" for i in range(30)),
    "\n".join(f"this line of the text trails off into nothing at all {i}..." for i in range(30)),
    " ".join(f"and then... {i} of the ... words" for i in range(30)),
    "\n".join(f"## heading {i} #tag #other with the words to be read" for i in range(20)),
]


def _load(path: Path, every: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for i, line in enumerate(fh) if i % every == 0]


@pytest.fixture(scope="module")
def texts(shared_dir) -> list[str]:
    raw: list[str] = []
    for path in sorted((shared_dir / "corpus").glob("*.jsonl.gz")):
        raw += _load(path, 40)
    for path in sorted((ROOT / "data" / "sample").glob("*.jsonl.gz")):
        raw += _load(path, 8)
    raw += EDGE_CASES
    norm = Normalize()(pa.table({"text": raw, "n_bytes": [0] * len(raw)}))[0]
    return raw + norm["text"].to_pylist()


def _params(name: str) -> dict:
    """The stage's configured thresholds, without its switches (the config's
    ``implementation: fast`` would override the implementation a test asks for)."""
    skip = ("enabled", "implementation")
    return {k: v for k, v in load_config()["stages"][name].items() if k not in skip}


FILTERS = [
    (FineWebQuality, "fineweb_quality"),
    (GopherRepetition, "gopher_repetition"),
    (GopherQuality, "gopher_quality"),
]


@pytest.mark.parametrize("cls,name", FILTERS, ids=[n for _, n in FILTERS])
def test_fast_filters_give_datatrove_decisions(cls, name, texts):
    reasons: Counter[str] = Counter()
    # the configured Korean and default thresholds, and datatrove's own defaults (stricter:
    # more documents reach the later checks' reasons)
    for params, lang in ((_params(name), "ko"), (_params(name), "en"), ({}, "en")):
        fast = cls(params).decide_texts(texts, lang)
        slow_filter = cls(params, implementation="datatrove")
        assert slow_filter.implementation == "datatrove"
        slow = slow_filter.decide_texts(texts, lang)
        diff = [
            (i, texts[i][:60], a, b)
            for i, (a, b) in enumerate(zip(fast, slow, strict=True))
            if a != b
        ]
        assert not diff, diff[:5]
        reasons.update(r for r in slow if r)
    # the comparison exercised most of the filter's checks
    assert (
        len(reasons) >= {"fineweb_quality": 4, "gopher_repetition": 8, "gopher_quality": 8}[name]
    ), reasons


def test_filter_steps_same_kept_set_on_tables(texts):
    """The steps (language groups, per-language thresholds) on a table: same split."""
    langs = (["ko", "en", "ja", "code", "de"] * len(texts))[: len(texts)]
    t = pa.table(
        {
            "id": [str(i) for i in range(len(texts))],
            "text": texts,
            "n_bytes": pa.array([len(x.encode()) for x in texts], pa.int64()),
            "lang": langs,
        }
    )
    for cls, name in FILTERS:
        kept_a, rej_a = cls(_params(name))(t)
        kept_b, rej_b = cls(_params(name), implementation="datatrove")(t)
        assert kept_a["id"].to_pylist() == kept_b["id"].to_pylist()
        if rej_b is None:
            assert rej_a is None
        else:
            assert rej_a["reason"].to_pylist() == rej_b["reason"].to_pylist()


def test_repetition_signals_equal_datatrove_helpers(texts):
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate,
        find_duplicates,
        find_top_duplicate,
        get_n_grams,
    )

    p = GopherRepetition().params_for("en")
    docs = [t for t in texts if t]
    sig = GopherRepetition.signals(pa.array(docs), p)
    for i, text in enumerate(docs):
        paragraphs = re.split(r"\n{2,}", text.strip())
        d, c = find_duplicates(paragraphs)
        assert sig["dup_para_frac"][i] == d / len(paragraphs)
        assert sig["dup_para_char_frac"][i] == c / len(text)
        lines = re.split("\n+", text)
        d, c = find_duplicates(lines)
        assert sig["dup_line_frac"][i] == d / len(lines)
        assert sig["dup_line_char_frac"][i] == c / len(text)
        words = text.split()
        for n, _ in p["top_n_grams"]:
            grams = get_n_grams(words, n)
            got = sig[f"top_{n}_gram"][i]
            if grams:
                assert got == find_top_duplicate(grams) / len(text), (i, n)
            else:
                assert np.isnan(got)
        for n, _ in p["dup_n_grams"]:
            assert sig[f"duplicated_{n}_n_grams"][i] == find_all_duplicate(words, n) / len(text)


def test_quality_and_fineweb_signals_equal_python(texts):
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

    docs = [t for t in texts if t.strip()]
    q = GopherQuality.signals(pa.array(docs), GopherQuality().params_for("en"))
    fw_p = FineWebQuality().params_for("en")
    f = FineWebQuality.signals(pa.array(docs), fw_p)
    stop = {"the", "be", "to", "of", "and", "that", "have", "with"}
    ends = tuple(TERMINAL_PUNCTUATION)
    for i, text in enumerate(docs):
        words = text.split()
        ns = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
        assert q["n_words"][i] == len(words) and q["n_non_symbol_words"][i] == len(ns)
        if ns:
            assert q["avg_word_length"][i] == np.mean([len(w) for w in ns])
        assert q["hash_ratio"][i] == text.count("#") / len(words)
        assert q["ellipsis_ratio"][i] == (text.count("...") + text.count("…")) / len(words)
        lines = text.splitlines()
        assert q["n_lines"][i] == len(lines)
        bullets = sum(s.lstrip().startswith(("•", "-")) for s in lines)
        assert q["bullet_lines_ratio"][i] == bullets / len(lines)
        endell = sum(s.rstrip().endswith(("...", "…")) for s in lines)
        assert q["end_ellipsis_lines_ratio"][i] == endell / len(lines)
        alpha = sum(any(c.isalpha() for c in w) for w in words)
        assert q["alpha_words_ratio"][i] == alpha / len(words)
        assert q["stop_words"][i] == len(stop & set(words))
        fl = [x for x in text.split("\n") if x.strip() != ""]
        assert f["n_lines"][i] == len(fl) and f["n_words"][i] == len(words)
        assert f["line_punct_ratio"][i] == sum(x.endswith(ends) for x in fl) / len(fl)
        short = sum(len(x) <= fw_p["short_line_length"] for x in fl)
        assert f["short_line_ratio"][i] == short / len(fl)
        seen, dup = set(), 0
        for x in fl:
            dup += len(x) if x in seen else 0
            seen.add(x)
        assert f["char_dup_ratio"][i] == dup / len(text.replace("\n", ""))
        assert f["list_ratio"][i] == text.count("\n") / len(words)


def test_arrow_splits_match_python_on_every_code_point():
    """Words are Arrow's whitespace split, lines a regex split: both must be Python's."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = [" a" + chr(c) + "b " for c in cps]
    words = Words(pa.array(texts))
    py = np.fromiter((len(t.split()) for t in texts), np.int64, len(texts))
    assert (words.counts == py).all()
    seps = [chr(c) for c in range(0x3000) if len(("a" + chr(c) + "b").splitlines()) > 1]
    lines_in = [f"x{s}y{s}" for s in seps] + ["a\r\nb", "", "\n", "a\n\n", "a\r"]
    got = splitlines(pa.array(lines_in))
    flat = got.values.to_pylist()
    expected = [t.splitlines() for t in lines_in]
    assert got.counts.tolist() == [len(e) for e in expected]
    assert flat == [x for e in expected for x in e]


def test_concatenation_ambiguity_uses_datatrove_semantics(monkeypatch):
    import datatrove.pipeline.filters.gopher_repetition_filter as grf

    reference = grf.find_all_duplicate
    fallback: list[int] = []
    monkeypatch.setattr(
        grf, "find_all_duplicate", lambda words, n: fallback.append(n) or reference(words, n)
    )
    # "ab c d e f" and "a bc d e f": different words, the same "".join -> datatrove counts
    # the second as a duplicate; the exact tuple grouping alone would not
    docs = [
        "p q r s ab c d e f g h i j a bc d e f g h",
        "ab c d e f ab c d e f",
        "one two three four five six one two three four five six seven",
    ]
    ng = NGrams(Words(pa.array(docs)))
    for n in (5, 6, 7):
        got = ng.all_duplicate_chars(n).tolist()
        assert got == [reference(d.split(), n) for d in docs], n
    assert ng.all_duplicate_chars(5)[0] > 0
    # only the ambiguous document (the first) went to datatrove's function, once per call
    assert fallback == [5, 6, 7, 5]


def test_batch_langid_matches_py3langid(shared_dir):
    ident = load_identifier()
    heads: list[str] = []
    for path in sorted((shared_dir / "corpus").glob("*.jsonl.gz")):
        heads += [t[:1000] for t in _load(path, 8)]
    heads += [*EDGE_CASES, "\u1100\u1161\u11a8 NFD 한국어", "...", "1234"]
    labels, probs = batch_classifier().classify(heads)
    for h, lab, p in zip(heads, labels, probs, strict=True):
        ref_lab, ref_p = ident.classify(h)
        assert lab == ref_lab, h[:80]
        assert abs(p - ref_p) < 1e-4, h[:80]


def test_langid_step_uses_prefix_and_batch(shared_dir):
    ko = _load(shared_dir / "corpus" / "ko.jsonl.gz", 20)
    en = _load(shared_dir / "corpus" / "en.jsonl.gz", 20)
    texts = ko + en + ["", "   "]
    t = pa.table(
        {
            "text": texts,
            "n_bytes": pa.array([len(x.encode()) for x in texts], pa.int64()),
            "lang": pa.array([None] * (len(texts) - 1) + ["code"], pa.string()),
        }
    )
    kept, _ = LanguageID(max_chars=300)(t)
    lang = kept["lang"].to_pylist()
    assert lang[: len(ko)] == ["ko"] * len(ko)
    assert lang[-2:] == ["und", "code"] and kept["lang_score"][len(texts) - 2].as_py() == 0.0
    ident = load_identifier()
    heads = pc.utf8_slice_codeunits(pa.array(en), 0, 300).to_pylist()
    assert lang[len(ko) : len(ko) + len(en)] == [ident.classify(h)[0] for h in heads]


def test_filter_implementation_and_parameters_are_checked():
    from pipeline.config import ConfigError, build_steps

    steps = build_steps(load_config(stages={"gopher_quality": {"implementation": "datatrove"}}))
    impl = {s.name: getattr(s, "implementation", None) for s in steps}
    assert impl["gopher_quality"] == "datatrove" and impl["gopher_repetition"] == "fast"
    with pytest.raises(ConfigError, match="implementation"):
        build_steps(load_config(stages={"gopher_repetition": {"implementation": "numba"}}))
    with pytest.raises(ConfigError, match="min_words"):
        build_steps(load_config(stages={"gopher_quality": {"ko": {"min_words": 3}}}))


def test_letter_counts_equal_re2_counts(texts):
    from pipeline.langid import hangul_share, letter_counts

    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    every = ["".join(map(chr, cps[i : i + 997])) for i in range(0, len(cps), 997)]
    arr = pa.array([*every, *texts, None, ""])
    for a in (arr, arr.slice(3, 500)):
        letters, hangul = letter_counts(a)
        assert letters.tolist() == pc.fill_null(pc.count_substring_regex(a, r"\pL"), 0).to_pylist()
        assert (
            hangul.tolist()
            == pc.fill_null(pc.count_substring_regex(a, r"\p{Hangul}"), 0).to_pylist()
        )
    share = hangul_share(pa.array(["한국어 text", "", "ㅋㅋ"])).to_pylist()
    assert share == pytest.approx([3 / 7, 0.0, 1.0])

"""Unit tests of the pipeline steps (no Ray)."""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import ConfigError, build_steps, load_config
from pipeline.dedup import (
    DedupSignatures,
    MinHasher,
    bucket_edges,
    components_local,
    star_violations,
    text_hash,
)
from pipeline.filters import (
    FineWebQuality,
    GopherQuality,
    GopherRepetition,
    KoreanBoilerplate,
    KoreanFilter,
    LanguageFilter,
    LengthFilter,
    PerLanguage,
)
from pipeline.langid import LanguageID
from pipeline.normalize import Normalize, fix_mojibake, normalize_text
from pipeline.pii import PIIScrubber, is_public_ip, luhn_ok, rrn_ok, scrub
from pipeline.writer import OUTPUT_SCHEMA, ShardWriter

KO = (
    "리브레오피스는 자유 오픈 소스 사무용 소프트웨어입니다. 문서를 작성하고 표를 계산하며 "
    "발표 자료를 만들 수 있습니다. 이 도움말은 각 기능을 사용하는 방법을 설명합니다. "
)


def table(texts, lang=None):
    n = len(texts)
    return pa.table(
        {
            "id": [str(i) for i in range(n)],
            "text": pa.array(texts, pa.string()),
            "source": ["t"] * n,
            "n_bytes": pa.array([len(t.encode()) for t in texts], pa.int64()),
            "lang": pa.array(
                [lang] * n if isinstance(lang, str) or lang is None else lang, pa.string()
            ),
            "lang_score": pa.array([1.0 if lang else None] * n, pa.float32()),
        }
    )


def rrn(p12: str) -> str:
    s = sum(int(c) * w for c, w in zip(p12, (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5), strict=True))
    return f"{p12[:6]}-{p12[6:]}{(11 - s % 11) % 10}"


# ---------------------------------------------------------------- normalize


def test_nfc_not_nfkc_on_hangul():
    text = unicodedata.normalize("NFD", "한국어") + " ㅋㅋㅋ ㈜ ①"
    out = normalize_text(text)
    assert out == "한국어 ㅋㅋㅋ ㈜ ①"  # composed syllables; compatibility jamo/symbols untouched
    assert "ㅋ" in out and "\u110f" not in out  # NFKC would give U+110F
    assert unicodedata.is_normalized("NFC", out)


def test_fullwidth_control_whitespace():
    out = normalize_text(
        "Ａｂｃ１２３！\u3000x\x00\u200b  y\t\tz  \r\n    indented \n\n\n\nend\ufeff "
    )
    assert out == "Abc123! x y z\n    indented\n\nend"
    # half-width katakana and Hangul half-width forms are not in the map
    assert normalize_text("ｶﾀｶﾅ ﾡ") == "ｶﾀｶﾅ ﾡ"


def test_mojibake_optional():
    broken = "í•œêµ­ì–´ cafÃ©"
    assert fix_mojibake(broken) == "한국어 café"
    assert normalize_text(broken, control=False) == broken  # off by default
    assert normalize_text(broken, mojibake=True) == "한국어 café"
    assert fix_mojibake("plain text") == "plain text"


def test_normalize_counts_and_bytes():
    step = Normalize()
    kept, rej = step(table(["a  b", "same", "Ａ"]))
    assert rej is None
    assert kept["n_bytes"].to_pylist() == [3, 4, 1]
    assert step.stats.counters["docs_changed"] == 2
    assert step.stats.counters["fullwidth_docs"] == 1


# ---------------------------------------------------------------- langid


def test_langid_labels_and_hangul_share():
    texts = [
        KO,
        "The quick brown fox jumps over the lazy dog and keeps running through the forest.",
        "Der schnelle braune Fuchs springt über den faulen Hund und läuft durch den Wald.",
        "12345 !!!",
    ]
    t = table(texts)
    kept, _ = LanguageID()(t)
    assert kept["lang"].to_pylist()[:3] == ["ko", "en", "de"]
    assert kept["lang"][3].as_py() == "und"
    share = kept["hangul_share"].to_pylist()
    assert share[0] > 0.95 and share[1] == 0.0
    assert 0.5 <= kept["lang_score"][0].as_py() <= 1.0


def test_langid_keeps_declared_language():
    kept, _ = LanguageID()(table(["def f(x):\n    return x"], lang="code"))
    assert kept["lang"][0].as_py() == "code" and kept["lang_score"][0].as_py() == 1.0


# ---------------------------------------------------------------- filters


def test_filter_base_counts_reasons_per_language():
    f = LengthFilter(min_chars=5, max_bytes=100)
    t = table(["", "abc", "x" * 200, "long enough"], lang=["ko", "ko", "en", "en"])
    kept, rej = f(t)
    assert kept["text"].to_pylist() == ["long enough"]
    assert dict(zip(rej["id"].to_pylist(), rej["reason"].to_pylist(), strict=True)) == {
        "0": "empty",
        "1": "too_short",
        "2": "too_long",
    }
    assert set(rej["stage"].to_pylist()) == {"length"}
    assert f.stats.removed == {"empty": [1, 0], "too_short": [1, 3], "too_long": [1, 200]}
    assert f.stats.removed_by_lang["ko"] == {"empty": [1, 0], "too_short": [1, 3]}
    assert f.stats.docs_in == 4 and f.stats.docs_out == 1


def test_language_filter_per_language_score():
    t = table(["a", "b", "c"], lang=["ko", "en", "xx"])
    t = t.set_column(
        t.schema.get_field_index("lang_score"),
        "lang_score",
        pa.array([0.85, 0.85, 0.99], pa.float32()),
    )
    kept, rej = LanguageFilter(languages=["ko", "en"], min_score={"default": 0.5, "ko": 0.9})(t)
    assert kept["lang"].to_pylist() == ["en"]
    assert sorted(rej["reason"].to_pylist()) == ["language_not_selected", "low_lang_score"]


def test_per_language_params():
    p = PerLanguage(
        {"default": {"a": 1, "b": 2}, "ko": {"b": 3}, "zh": None, "ja": {"enabled": False}}
    )
    assert p.for_lang("ko") == {"a": 1, "b": 3}
    assert p.for_lang("en") == {"a": 1, "b": 2}
    assert p.for_lang("zh") is None and p.for_lang("ja") is None


def test_korean_filter_signals():
    texts = [
        KO * 3,
        "ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ ㅎㅎㅎㅎㅎㅎ 진짜 웃기다 ㅠㅠㅠㅠㅠ",
        "카지노 바카라 먹튀 검증 토토사이트 추천 " + KO,
        "mostly english text with a little 한국어 inside of it for sure",
    ]
    t = LanguageID(hangul_override=None)(table(texts))[0]
    t = t.set_column(t.schema.get_field_index("lang"), "lang", pa.array(["ko"] * 4))
    kept, rej = KoreanFilter(min_hangul_share=0.65, max_jamo_ratio=0.02, max_spam_terms=3)(t)
    assert kept["id"].to_pylist() == ["0"]
    assert dict(zip(rej["id"].to_pylist(), rej["reason"].to_pylist(), strict=True)) == {
        "1": "ko_repeated_jamo",
        "2": "ko_spam_terms",
        "3": "ko_low_hangul",
    }
    assert rej["spam_terms"][1].as_py() >= 3


def test_korean_boilerplate_lines_removed():
    article = (
        "서울=연합뉴스 홍길동 기자 hong@yna.co.kr\n"
        + KO
        + "\n<저작권자(c) 연합뉴스, 무단 전재-재배포 금지>"
    )
    only = "무단전재 및 재배포 금지\nCopyright ⓒ 한국일보"
    step = KoreanBoilerplate()
    kept, rej = step(
        table([article, only, "English: no copyright line removed here"], lang=["ko", "ko", "en"])
    )
    assert kept["text"][0].as_py() == KO.strip()
    assert kept["n_bytes"][0].as_py() == len(KO.strip().encode())
    assert kept["boilerplate_lines"].to_pylist() == [2, 0]
    assert rej["reason"].to_pylist() == ["ko_boilerplate"] and rej["text"][0].as_py() == only
    assert step.stats.counters["lines_removed"] == 4


def test_datatrove_filters_space_words():
    good = (
        "The committee published its annual report on the state of the public libraries, and "
        "the findings show that the number of visitors has grown steadily over the last decade. "
        "Several branches extended their opening hours, while others invested in digital "
        "services such as electronic lending and online courses for adults. The authors argue "
        "that these changes were welcomed by the residents, who now use the buildings as "
        "places to study, to meet and to attend cultural events organised by volunteers."
    )
    spam = "buy now " * 200
    t = table([good, spam, KO * 8], lang=["en", "en", "ko"])
    kept, rej = GopherQuality(
        {"default": {"min_stop_words": 2}, "ko": {"min_stop_words": None, "min_avg_word_length": 2}}
    )(t)
    assert rej is None or "0" not in rej["id"].to_pylist()
    assert "2" in kept["id"].to_pylist()
    _, rej2 = GopherRepetition()(t)
    assert "1" in rej2["id"].to_pylist() and "0" not in rej2["id"].to_pylist()
    kept3, _ = FineWebQuality({"ko": None})(t)
    assert "2" in kept3["id"].to_pylist()  # disabled for ko


# ---------------------------------------------------------------- PII


def test_rrn_validation():
    valid = rrn("900101123456")
    assert rrn_ok(valid)
    assert not rrn_ok(valid[:-1] + str((int(valid[-1]) + 1) % 10))  # bad checksum
    assert rrn_ok(valid[:-1] + str((int(valid[-1]) + 1) % 10), checksum=False)
    assert not rrn_ok(rrn("901301123456"))  # month 13
    assert not rrn_ok(rrn("010229312345"))  # 2001-02-29 does not exist
    assert rrn_ok(rrn("000229312345"))  # 2000-02-29 does
    assert not rrn_ok(rrn("900101923456"))  # gender digit 9


def test_luhn_and_ip():
    assert luhn_ok("4111 1111 1111 1111") and luhn_ok("5500-0000-0000-0004")
    assert not luhn_ok("4111 1111 1111 1112") and not luhn_ok("0000 0000 0000 0000")
    assert is_public_ip("8.8.8.8") and is_public_ip("2001:4860:4860::8888")
    for private in (
        "10.0.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "172.16.5.4",
        "fe80::1",
        "::1",
        "203.0.113.5",
    ):
        assert not is_public_ip(private), private


def test_scrub_typed_placeholders_and_counts():
    v = rrn("900101123456")
    text = (
        f"연락처 010-1234-5678, 서울 02-123-4567, 메일 hong.gd@example.co.kr, 주민번호 {v}, "
        f"틀린 번호 {v[:-1]}{(int(v[-1]) + 1) % 10}, 카드 4111-1111-1111-1111, "
        "국민은행 123-45-678901 예금주 홍길동, 서버 8.8.8.8 내부 192.168.0.1, "
        "v6 2001:4860:4860::8888, 시각 12:30:45, 버전 1.2.3, 주문번호 12345678901234"
    )
    counts: dict[str, int] = {}
    out = scrub(text, counts=counts)
    assert counts == {"phone": 2, "email": 1, "rrn": 1, "card": 1, "account": 1, "ip": 2}
    for kept in ("192.168.0.1", "12:30:45", "1.2.3", "12345678901234", "국민은행", "예금주 홍길동"):
        assert kept in out
    assert "010-1234-5678" not in out and "<RRN>" in out and "<ACCOUNT>" in out
    # a number without account context is not an account
    assert scrub("부품 123-45-678901 규격") == "부품 123-45-678901 규격"
    assert scrub("mail a@b.io", placeholders={"email": "[E]"}) == "mail [E]"


def test_pii_step_counts():
    step = PIIScrubber(types=["email", "phone"])
    kept, _ = step(table(["a@example.com 010-1111-2222 4111111111111111", "no pii here"]))
    assert kept["pii_count"].to_pylist() == [2, 0]
    assert "4111111111111111" in kept["text"][0].as_py()  # card not enabled
    assert step.stats.counters == {"pii_email": 1, "pii_phone": 1, "docs_with_pii": 1}
    with pytest.raises(ValueError, match="unknown PII"):
        PIIScrubber(types=["ssn"])


# ---------------------------------------------------------------- dedup


def test_minhash_similarity_and_exact_hash():
    rng = np.random.default_rng(0)
    syll = "abcdefghijklmnoprstuvwy"
    vocab = [a + b + c + d for a in syll for b in "aeiou" for c in syll for d in "aeiou"]
    words = [vocab[i] for i in rng.integers(0, len(vocab), 400)]
    a = " ".join(words)
    b = " ".join(words[:390] + ["x"] * 10)  # J(5-shingles) ~ 0.94
    c = " ".join(vocab[i] + "z" for i in rng.integers(0, len(vocab), 400))
    mh = MinHasher(bands=20, rows=5)
    sig, has = mh.signatures(pa.array([a, b, c, ""]))
    assert has.tolist() == [True, True, True, False]
    assert np.mean(sig[0] == sig[1]) > 0.8 and np.mean(sig[0] == sig[2]) < 0.05
    keys = mh.band_keys(sig)
    assert (keys[0] == keys[1]).any() and not (keys[0] == keys[2]).any()
    h = text_hash(pa.array(["Hello  World", "hello world", "hello world!"]))
    assert h[0] == h[1] != h[2]
    t = DedupSignatures()(table([a, ""]))[0]
    assert t["band_keys"][1].as_py() is None and len(t["band_keys"][0].as_py()) == 14


def _union_find(edges, nodes):
    parent = {n: n for n in nodes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in nodes}


@pytest.mark.parametrize("seed", range(6))
def test_connected_components_match_union_find(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    edges = rng.integers(0, n, size=(int(rng.integers(1, 500)), 2)).astype(np.int64) * 7 + 3
    rows = components_local(edges, parts=int(rng.integers(1, 6)))
    nodes = {int(x) for x in edges.ravel()}
    ref = _union_find(edges.tolist(), nodes)
    got = {int(a): (int(b), int(s)) for a, b, s in rows}
    sizes: dict[int, int] = {}
    for r in ref.values():
        sizes[r] = sizes.get(r, 0) + 1
    for node, root in ref.items():
        if sizes[root] > 1:
            assert got[node] == (root, sizes[root])
    assert star_violations(np.empty((0, 2), np.int64)) == 0


def test_long_chain_converges():
    edges = np.stack([np.arange(0, 3000), np.arange(1, 3001)], axis=1).astype(np.int64)
    rows = components_local(edges, parts=3)
    assert set(rows[:, 1].tolist()) == {0} and set(rows[:, 2].tolist()) == {3001}


def test_bucket_edges_star():
    keys = np.array([5, 5, 5, 9, 9, 1], np.uint64)
    nodes = np.array([30, 10, 20, 40, 10, 50], np.int64)
    edges, members = bucket_edges(keys, nodes)
    assert sorted(map(tuple, edges.tolist())) == [(10, 20), (10, 30), (10, 40)]
    assert members.tolist() == [20, 30, 40]


# ---------------------------------------------------------------- writer and config


def test_writer_sizes_and_determinism(tmp_path):
    import fsspec

    fs = fsspec.filesystem("file")
    texts = [f"document {i} " + "x" * (i % 50) for i in range(300)]
    t = table(texts, lang="en")

    def write(root, chunks):
        w = ShardWriter(fs, str(root), "data", "part-a", row_group_bytes=2000, file_bytes=6000)
        for lo in range(0, 300, chunks):
            w.write(t.slice(lo, chunks))
        return w.close()

    a = write(tmp_path / "a", 300)
    b = write(tmp_path / "b", 7)  # other batching, same files
    assert [f["sha256"] for f in a] == [f["sha256"] for f in b]
    assert len(a) > 1 and sum(f["rows"] for f in a) == 300
    pf = pq.ParquetFile(tmp_path / "a" / a[0]["path"])
    assert pf.schema_arrow.equals(OUTPUT_SCHEMA) and pf.metadata.num_row_groups >= 2
    assert pf.metadata.row_group(0).column(1).compression == "ZSTD"
    assert not list((tmp_path / "a").rglob("*.tmp"))


def test_config_defaults_and_errors(tmp_path):
    cfg = load_config(inputs=["x.jsonl"], output="out")
    assert cfg["inputs"][0]["text_field"] == "text"
    names = [s.name for s in build_steps(cfg)]
    assert names[0] == "normalize" and names[-1] == "dedup_signatures" and "pii" in names
    with pytest.raises(ConfigError, match=r"stages\.normalise"):
        load_config({"stages": {"normalise": {}}})
    p = tmp_path / "c.yaml"
    p.write_text(
        "stages:\n  gopher_quality:\n    ko: {min_doc_words: 7}\n  pii: {enabled: false}\n"
    )
    cfg = load_config(p)
    assert cfg["stages"]["gopher_quality"]["ko"] == {"min_doc_words": 7}
    assert cfg["stages"]["gopher_quality"]["default"]["min_doc_words"] == 50
    assert "pii" not in [s.name for s in build_steps(cfg)]
    p.write_text("inputs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)

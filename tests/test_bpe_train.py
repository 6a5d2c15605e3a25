"""BPE training from counts: exactly tokenizers' own trainer, from Parquet shards, on Ray."""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forensics.training import byte_level_tokenizer, continue_bpe, train_bpe
from pipeline.bpe.count import (
    BPEInputError,
    CountTable,
    Mixture,
    PretokenCounter,
    count_shards,
    parse_mix,
)
from pipeline.bpe.train import train_from_shards
from pipeline.bpe.trainer import BPETrainingError, train_from_code_points, train_from_counts

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _docs(cat: str, limit: int) -> list[dict]:
    out = []
    with gzip.open(SAMPLE / f"{cat}.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            out.append(d)
            if len(out) >= limit:
                break
    return out


def _hf_merges(texts, vocab_size, pretokenizer):
    js = json.loads(train_bpe(texts, vocab_size, pretokenizer=pretokenizer))
    return js, [
        tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in js["model"]["merges"]
    ]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    return {c: _docs(c, 40) for c in ("en", "ko", "ja", "code-python", "ru")}


@pytest.mark.parametrize("pretokenizer", ["gpt2", "bytelevel-digits", "cl100k"])
def test_train_from_counts_equals_the_hf_trainer(corpus, pretokenizer):
    """Same text → the same merges, in the same order, and the same vocabulary ids as
    ``Tokenizer.train_from_iterator`` (ties included: real text has many at the tail)."""
    texts = [d["text"] for docs in corpus.values() for d in docs]
    js, ref = _hf_merges(texts, 4000, pretokenizer)
    counts = PretokenCounter(pretokenizer).count(texts)
    got = train_from_counts(counts, 4000)
    assert list(got.merges) == ref
    assert got.vocab == js["model"]["vocab"]
    # the slow, obvious oracle agrees too (pure Python BPE from the same counts)
    from forensics.merges import bytes_to_unicode

    slow = continue_bpe([], "byte", None, counts, 600)
    inv = {c: b for b, c in bytes_to_unicode().items()}
    decoded = [(bytes(inv[c] for c in a), bytes(inv[c] for c in b)) for a, b in ref[:600]]
    assert slow == decoded


def test_train_from_counts_random_words_and_ties():
    """Random tiny vocabularies with many equal counts: tie-breaking by token ids."""
    rng = random.Random(7)
    for trial in range(20):
        letters = "abcde"[: rng.randint(2, 5)]
        words = Counter()
        for _ in range(rng.randint(3, 40)):
            w = "".join(rng.choice(letters) for _ in range(rng.randint(1, 7)))
            words[w] += rng.choice([1, 1, 2, 3])
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.BpeTrainer(vocab_size=60, show_progress=False, special_tokens=[])
        tok.train_from_iterator([" ".join([w] * c) for w, c in words.items()], trainer)
        ref = json.loads(tok.to_str())["model"]
        got = train_from_counts(words, 60, alphabet=[])
        ref_merges = [
            tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in ref["merges"]
        ]
        assert list(got.merges) == ref_merges, trial
        assert got.vocab == ref["vocab"], trial


def test_train_from_counts_bad_input():
    with pytest.raises(BPETrainingError, match="below the alphabet"):
        train_from_counts({"ab": 2}, 100)
    with pytest.raises(BPETrainingError, match="non-negative"):
        train_from_counts((["ab"], [-1]), 300)
    # runs out of pairs: stops with what the counts give
    got = train_from_counts({"ab": 2}, 300)
    assert got.merges == (("a", "b"),)


@pytest.fixture(scope="session")
def aot_cache(tmp_path_factory) -> Path:
    """A cache folder of this test session's own for the ahead-of-time trainer (built there
    once, by the first isolated training)."""
    return tmp_path_factory.mktemp("mixtrace-cache")


@pytest.mark.parametrize("engine", ["aot", "jit"])
def test_code_point_input_and_isolated_child_train_the_same(
    corpus, engine, aot_cache, tmp_path, monkeypatch
):
    """The count table's code-point arrays (Arrow buffers, no Python strings) hold the same
    words as its strings, sliced chunks included; the trainer in its child process gives the
    same merges as in-process (numba's JIT), both with the loop compiled ahead of time and,
    where that cannot be built (here: its cache folder cannot be created), on the JIT; zero
    counts and empty words are dropped the same way."""
    if engine == "aot":
        monkeypatch.setenv("MIXTRACE_CACHE_DIR", str(aot_cache))
    else:
        (tmp_path / "file").write_text("not a folder")
        monkeypatch.setenv("MIXTRACE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    texts = [d["text"] for docs in corpus.values() for d in docs]
    counts = PretokenCounter("gpt2").count(texts)
    words = sorted(counts)
    big = pa.large_string()
    col = pa.chunked_array([pa.array(words[:500], big), pa.array(words[500:], big).slice(3)])
    table = CountTable(
        [
            pa.table(
                {"word": col, "count": pa.array([counts[w] for w in words[:500] + words[503:]])}
            )
        ],
        "gpt2",
        {},
    )
    cps, lengths, cnt = table.code_points()
    ws, cs = table.words_and_counts()
    assert cps.dtype == np.uint32 and len(lengths) == len(ws) == len(cnt)
    assert "".join(ws) == cps.tobytes().decode("utf-32-le")
    assert lengths.tolist() == [len(w) for w in ws] and cnt.tolist() == cs.tolist()
    ref = train_from_counts(([*ws, "", "xyz"], [*cs.tolist(), 5, 0]), 1500)
    got = train_from_code_points(cps, lengths, cnt, 1500, isolate=True)
    assert got.merges == ref.merges and got.vocab == ref.vocab
    assert got.engine == engine and ref.engine == "jit"
    assert got.peak_rss is not None and got.peak_rss > 0
    if engine == "aot":  # the point of the build: it loads without numba (and LLVM)
        probe = (
            "import sys; from pipeline.bpe import trainer_aot as a; m, how = a.load(build=False);"
            "assert m is not None, how; print(sorted(k for k in sys.modules if 'numba' in k "
            "or 'llvmlite' in k))"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[]"
    with pytest.raises(BPETrainingError, match="sum to"):
        train_from_code_points(cps, lengths[:-1], cnt[:-1], 1500)


def _write_shards(folder: Path, corpus, per_file: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": d["id"], "text": d["text"], "lang": cat}
        for cat, docs in corpus.items()
        for d in docs
    ]
    paths = []
    chunk = (len(rows) + per_file - 1) // per_file
    for i in range(per_file):
        p = folder / f"part-{i:03d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[i * chunk : (i + 1) * chunk]), p)
        paths.append(p)
    return paths


def test_train_from_shards_in_process_matches_hf(tmp_path, corpus):
    _write_shards(tmp_path / "shards", corpus, per_file=3)
    res = train_from_shards(
        str(tmp_path / "shards"),
        3000,
        pretokenizer="gpt2",
        out=str(tmp_path / "tok"),
        use_ray=False,
    )
    texts = [d["text"] for docs in corpus.values() for d in docs]
    js, _ = _hf_merges(texts, 3000, "gpt2")
    ours = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert ours["model"]["vocab"] == js["model"]["vocab"]
    assert [tuple(m) for m in ours["model"]["merges"]] == [tuple(m) for m in js["model"]["merges"]]
    assert ours["pre_tokenizer"] == js["pre_tokenizer"]
    # the written count table reads back identically; 64-bit counts
    back = CountTable.read(str(tmp_path / "tok" / "counts"))
    assert back.num_words == res.table.num_words
    assert back.partitions[0].schema.field("count").type == pa.int64()
    report = json.loads((tmp_path / "tok" / "train_report.json").read_text())
    assert report["training"]["merges"] == 3000 - 256
    # loads in tokenizers and round-trips text
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    s = "안녕하세요, world 123"
    assert tok.decode(tok.encode(s).ids) == s
    # and in transformers (a standard tokenizer.json: no custom code, no remote code)
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok" / "tokenizer.json"))
    assert fast(s)["input_ids"] == tok.encode(s).ids
    assert fast.decode(fast(s)["input_ids"]) == s


def test_count_shards_on_ray_partitions_and_mixture(tmp_path, corpus, ray_session):
    _write_shards(tmp_path / "shards", corpus, per_file=4)
    plain = count_shards(str(tmp_path / "shards"), "gpt2", use_ray=False)
    on_ray = count_shards(str(tmp_path / "shards"), "gpt2", partitions=3)
    assert len(on_ray.partitions) == 3
    a = dict(zip(*plain.words_and_counts(), strict=True))
    b = dict(zip(*on_ray.words_and_counts(), strict=True))
    assert a == b
    # a mixture: byte shares as asked (to document granularity), deterministic
    mixed = count_shards(
        str(tmp_path / "shards"), "gpt2", mix="en=0.5,ko=0.3,code*=0.2", partitions=2
    )
    true = mixed.stats["true_mixture"]
    assert set(true) == {"en", "ko", "code*"}
    # to one document: code-python documents are ~27 KB of ~300 KB in all
    assert abs(true["en"] - 0.5) < 0.05 and abs(true["ko"] - 0.3) < 0.05
    assert abs(true["code*"] - 0.2) < 0.1
    again = count_shards(
        str(tmp_path / "shards"), "gpt2", mix="en=0.5,ko=0.3,code*=0.2", use_ray=False
    )
    assert again.stats["bytes"] == mixed.stats["bytes"]
    # pruning by minimum count
    pruned = count_shards(str(tmp_path / "shards"), "gpt2", min_count=5, use_ray=False)
    assert 0 < pruned.num_words < plain.num_words
    assert min(pruned.words_and_counts()[1]) >= 5


def test_mixture_plan_and_parse():
    assert parse_mix("ko=3,en=1") == {"ko": 0.75, "en": 0.25}
    import numpy as np

    from pipeline.bpe.count import BUCKETS

    def hist(buckets):
        h = np.zeros(BUCKETS, np.int64)
        h[buckets] = 100
        return h

    m = Mixture({"ko": 0.75, "en": 0.25}, "lang")
    # ko is the scarce one: all of ko (300 bytes), en a third of that (one 100-byte document)
    m.plan({"ko": hist([10, 20, 30]), "en": hist([5, 15, 25, 35])})
    assert m.thresholds == {"ko": 31, "en": 6}
    keep = m.keep(["ko", "en", "en", None, "xx"], np.array([30, 5, 6, 0, 0]))
    assert keep.tolist() == [True, True, False, False, False]
    with pytest.raises(BPEInputError, match="empty"):
        parse_mix({})
    with pytest.raises(BPEInputError, match="KEY=WEIGHT"):
        parse_mix("ko")
    with pytest.raises(BPEInputError, match="all zero"):
        parse_mix("ko=0")
    with pytest.raises(BPEInputError, match="matches mixture key"):
        Mixture({"xx": 1.0}).plan({"ko": hist([1])})


def test_bad_shards_are_named(tmp_path, corpus):
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), bad / "no-text.parquet")
    with pytest.raises(BPEInputError, match=r"no-text\.parquet: no 'text' column"):
        count_shards(str(bad), use_ray=False)
    (bad / "no-text.parquet").unlink()
    (bad / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BPEInputError, match=r"junk\.parquet: not a readable Parquet"):
        count_shards(str(bad), use_ray=False)
    with pytest.raises(BPEInputError, match="not above the byte alphabet"):
        train_from_shards(str(bad), 200, use_ray=False)
    with pytest.raises(BPEInputError, match=r"no such file or folder.*nothing-here"):
        count_shards(str(tmp_path / "nothing-here"), use_ray=False)
    (bad / "junk.parquet").unlink()
    (bad / "notes.txt").write_text("text files are not shards")
    with pytest.raises(BPEInputError, match="no Parquet shard"):
        count_shards(str(bad), use_ray=False)


@pytest.mark.parametrize("name", ["gpt2", "cl100k", "bytelevel-digits"])
def test_pretokenizer_matches_the_tokenizer(corpus, name):
    """Both counting paths split text exactly as the trained tokenizer's own pre-tokenizer
    fed line by line: real text of five languages, and random strings of tricky characters
    (every kind of Unicode space, \\r, digits of other scripts, contractions in any case)."""
    tok = byte_level_tokenizer(name)

    def reference(text):
        return Counter(
            p
            for line in re.findall(r"[^\n]*\n|[^\n]+", text)
            for p, _ in tok.pre_tokenizer.pre_tokenize_str(line)
        )

    fast, slow = PretokenCounter(name), PretokenCounter(name, fast=False)
    assert fast.fast and not slow.fast
    texts = [d["text"] for docs in corpus.values() for d in docs[:10]]
    want = sum((reference(t) for t in texts), Counter())
    assert fast.count(texts) == want and slow.count(texts) == want
    chars = list(" \t\n\r\x0b\x0c\x85\u2028\u2029\u00a0\u3000\u200b\u1680")
    chars += [*"aZé한字ア٣5۴²½'sStTlLdDmMvVrRe.,!?-_()\"", "\u0301", "\U0001f600", "\x00"]
    rng = random.Random(1)
    for _ in range(1500):
        s = "".join(rng.choice(chars) for _ in range(rng.randint(1, 40)))
        assert fast.count([s]) == reference(s), repr(s)


# ------------------------------------------------------------------------------------------
# vocabulary extension
# ------------------------------------------------------------------------------------------
def test_extend_gpt2_with_korean(tmp_path, shared_tokenizers):
    """Real merges appended to GPT-2 (never add_tokens): every new token reachable, English
    and code encode exactly as before, Korean needs far fewer tokens."""
    from tokenizers import Tokenizer

    from pipeline.bpe.extend import extend_tokenizer, load_base_tokenizer

    ko = _docs("ko", 200)
    train, held = ko[::2], ko[1::2]
    (tmp_path / "ko").mkdir()
    pq.write_table(
        pa.Table.from_pylist([{"id": d["id"], "text": d["text"], "lang": "ko"} for d in train]),
        tmp_path / "ko" / "part-0.parquet",
    )
    english = [d["text"] for d in _docs("en", 30)] + [d["text"] for d in _docs("code-go", 3)]
    res = extend_tokenizer(
        shared_tokenizers / "gpt2",
        str(tmp_path / "ko"),
        3000,
        check_texts=english,
        out=str(tmp_path / "ext"),
        use_ray=False,
    )
    rep = res.report
    assert rep["added_tokens"] == len(res.new_tokens) > 1000
    assert rep["unreachable_new_tokens"] == []
    assert (
        all(c["identical"] for c in rep["unchanged_checks"]) and len(rep["unchanged_checks"]) == 33
    )
    base = Tokenizer.from_str(json.dumps(load_base_tokenizer(shared_tokenizers / "gpt2")))
    ext = Tokenizer.from_file(str(tmp_path / "ext" / "tokenizer.json"))
    obj = json.loads((tmp_path / "ext" / "tokenizer.json").read_text())
    assert len(obj["model"]["merges"]) == 50000 + rep["added_tokens"]  # appended merges
    assert ext.get_vocab_size() == 50257 + rep["added_tokens"]
    text = "".join(d["text"] for d in held)
    before = len(base.encode(text).ids)
    after = len(ext.encode(text).ids)
    assert after < 0.6 * before  # held-out Korean
    assert ext.decode(ext.encode(text).ids) == text


def test_extend_refuses_a_base_that_is_not_byte_level_bpe(tmp_path, shared_tokenizers):
    from tokenizers import Tokenizer, models

    from pipeline.bpe.extend import load_base_tokenizer

    with pytest.raises(BPEInputError, match="not a byte-level BPE"):
        load_base_tokenizer(shared_tokenizers / "llama2" / "tokenizer.json")
    wp = tmp_path / "wordpiece.json"
    Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(wp))
    with pytest.raises(BPEInputError, match="is not BPE"):
        load_base_tokenizer(wp)
    with pytest.raises(BPEInputError, match=r"no tokenizer\.json, nor vocab\.json"):
        load_base_tokenizer(tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(BPEInputError, match=r"broken\.json: not a loadable"):
        load_base_tokenizer(tmp_path / "broken.json")


def test_aot_build_failure_is_remembered_and_falls_back(tmp_path, monkeypatch):
    """Without a usable C compiler the ahead-of-time build fails with numba's error, leaves a
    ``.failed`` note that the next load reads instead of building again, and the caller is
    told to use the JIT (None)."""
    from pipeline.bpe import trainer_aot

    monkeypatch.setenv("MIXTRACE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "/bin/false")
    mod, why = trainer_aot.load()
    assert mod is None and "failed" in why and "compiler" in why
    marker = trainer_aot.module_path().with_suffix(".failed")
    assert marker.exists() and not trainer_aot.module_path().exists()
    mod, again = trainer_aot.load()
    assert mod is None and str(marker) in again and "delete" in again

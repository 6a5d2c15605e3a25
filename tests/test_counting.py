"""The fast trajectory counter must equal a brute-force replay of the merge list."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forensics.counting import (
    BPEModel,
    brute_force_counts,
    build_trajectories,
    category_events,
    count_tokens,
    merge_category_counts,
)


def random_merges(rng: random.Random, alphabet: list[bytes], n: int) -> list[tuple[bytes, bytes]]:
    """A valid merge list: parts exist already, every product is new."""
    toks = list(alphabet)
    seen = set(toks)
    merges = []
    tries = 0
    while len(merges) < n and tries < 50 * n:
        tries += 1
        # prefer recent tokens so that longer tokens appear
        a = rng.choice(toks[-20:] if rng.random() < 0.5 else toks)
        b = rng.choice(toks)
        if a + b in seen:
            continue
        merges.append((a, b))
        toks.append(a + b)
        seen.add(a + b)
    return merges


def to_symbols(model: BPEModel, word: bytes) -> str:
    return model.symbol_str(word)


def check(model: BPEModel, corpora: list[Counter], T: int) -> None:
    evs = []
    for wc in corpora:
        cc = count_tokens(model, wc, n_bytes=1)
        evs.append(category_events(model, cc))
    tr = build_trajectories(model, [str(i) for i in range(len(corpora))], evs, T)
    for i, wc in enumerate(corpora):
        brute = brute_force_counts(model, wc, T)
        for t in range(1, tr.n_steps + 1):
            got = tr.counts_at(i, t)
            assert got == brute[t - 1], f"category {i}, step {t}"
        # merge counts at their own step
        for t in range(1, tr.n_steps + 1):
            a, b = (int(x) for x in model.parts[t - 1])
            assert tr.merge_counts[i, t - 1] == brute[t - 1].get((a, b), 0)
        assert tr.total_pairs[i] == sum(brute[0].values())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**9), nm=st.integers(1, 60), nwords=st.integers(1, 40))
def test_trajectories_equal_brute_force_random_merges(seed, nm, nwords):
    rng = random.Random(seed)
    alphabet = [b"a", b"b", b"c", b" ", "é".encode()[:1], "é".encode()[1:]]
    merges = random_merges(rng, alphabet, nm)
    model = BPEModel(merges, "byte")
    corpora = []
    for _ in range(2):
        wc: Counter = Counter()
        for _ in range(nwords):
            n = rng.randint(1, 12)
            w = b"".join(rng.choice([*alphabet[:4], b"\xc3\xa9"]) for _ in range(n))
            wc[to_symbols(model, w)] += rng.randint(1, 5)
        corpora.append(wc)
    check(model, corpora, nm)


def test_trajectories_equal_brute_force_trained_char_level():
    """A char-level (SentencePiece-like) model with merges learned by `tokenizers`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    rng = random.Random(7)
    letters = "가나다라마바abcdㅋ"
    docs = [
        " ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 8))) for _ in range(20))
        for _ in range(50)
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=80, show_progress=False))
    data = tok.to_str()
    import json

    m = json.loads(data)["model"]
    merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in m["merges"]]
    merges = [(a.encode(), b.encode()) for a, b in merges]
    alphabet = [k.encode() for k in m["vocab"] if len(k) == 1]
    model = BPEModel(merges, "char", alphabet)
    wc: Counter = Counter()
    for d in docs[:25]:
        for w in d.split():
            wc[w] += 1
    wc2: Counter = Counter(w for d in docs[25:] for w in d.split())
    check(model, [wc, wc2], len(merges))


def test_shard_counts_sum_like_one_shard():
    rng = random.Random(3)
    alphabet = [b"x", b"y", b"z"]
    model = BPEModel(random_merges(rng, alphabet, 20), "byte")
    words = ["".join(rng.choice("xyz") for _ in range(rng.randint(1, 9))) for _ in range(200)]
    whole = count_tokens(model, Counter(words))
    parts = [count_tokens(model, Counter(words[i::3])) for i in range(3)]
    merged = merge_category_counts(parts)
    np.testing.assert_array_equal(whole.uni_ids, merged.uni_ids)
    np.testing.assert_array_equal(whole.uni_counts, merged.uni_counts)
    np.testing.assert_array_equal(whole.bi_keys, merged.bi_keys)
    np.testing.assert_array_equal(whole.bi_counts, merged.bi_counts)


def test_invalid_merge_list_is_rejected():
    with pytest.raises(ValueError, match="not produced earlier"):
        BPEModel([(b"ab", b"c")], "byte")
    with pytest.raises(ValueError, match="produced twice"):
        BPEModel([(b"a", b"b"), (b"b", b"c"), (b"ab", b"c"), (b"a", b"bc")], "byte")


def test_char_model_splits_words_at_unknown_characters():
    model = BPEModel([(b"a", b"b")], "char", [b"a", b"b", b"c"])
    got = model.split_unknown({"abXab": 2, "ab": 1, "Z": 4})
    assert dict(got) == {"ab": 5}
    cc = count_tokens(model, {"abXcab": 1})
    # words "ab" and "cab": tokens ab, c, ab; one bigram (c, ab)
    ab = model.id_of[b"ab"]
    c = model.id_of[b"c"]
    assert dict(zip(cc.uni_ids.tolist(), cc.uni_counts.tolist(), strict=True)) == {ab: 2, c: 1}
    assert cc.bi_keys.tolist() == [c * model.vocab_size + ab]

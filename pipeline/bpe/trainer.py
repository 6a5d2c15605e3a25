"""Byte-level BPE training from pretoken counts, merge for merge what ``tokenizers`` trains.

:func:`train_from_counts` is the pure core (word counts in, merge list out): the same algorithm
as the Rust ``BpeTrainer`` of Hugging Face ``tokenizers`` — the most frequent adjacent pair is
merged at every step, ties going to the pair of smaller token ids (the alphabet numbered by
code point, merged tokens in order of creation), pair counts updated from the neighbours of
every merged occurrence, a lazy max-heap — compiled with numba, so that a table of counts
reduced from a cluster can be trained on one node without the text. A merge whose token string
already exists reuses that token (the vocabulary does not grow), as ``tokenizers`` does. The
compiled loop is :mod:`pipeline.bpe.trainer_core`; this module prepares its arrays and reads
its rows back, and imports numba only when it trains in-process.

The slow, obvious version is :func:`forensics.training.continue_bpe` (pure Python) and the
reference is ``tokenizers`` itself: the tests compare all three on real corpora.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "BPETrainingError",
    "TrainedBPE",
    "byte_alphabet",
    "continue_training",
    "to_tokenizer",
    "train_from_code_points",
    "train_from_counts",
]

_KEY = np.int64(1 << 24)  # pair key a * _KEY + b: token ids below 16.7 M
_P = np.uint64(1_000_003)  # polynomial string hash (duplicate tokens; verified afterwards)


class BPETrainingError(ValueError):
    """The counts cannot train the requested vocabulary (names the problem)."""


@dataclass(frozen=True)
class TrainedBPE:
    """``alphabet``: the base symbols (token ids 0..len-1, sorted by code point);
    ``merges``: (left, right) token strings in rank order; ``vocab``: token string → id."""

    alphabet: tuple[str, ...]
    merges: tuple[tuple[str, str], ...]
    vocab: dict[str, int]
    duplicates: int  # merges whose token already existed (tokenizers records them too)
    peak_rss: int | None = None  # bytes: the training child's peak resident size (isolate)
    engine: str = "jit"  # the loop that ran: numba's JIT, or "aot" (trainer_aot, isolate)


def byte_alphabet() -> list[str]:
    """The 256 byte-level symbols (GPT-2's bytes → unicode map)."""
    from forensics.merges import bytes_to_unicode

    return sorted(bytes_to_unicode().values())


# ------------------------------------------------------------------------------------------
# the Python API
# ------------------------------------------------------------------------------------------
def _string_hashes(tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hash of each token string and P^len (mod 2^64), as ``_train`` extends them."""
    mask, p = (1 << 64) - 1, int(_P)
    hs, ps = [], []
    for t in tokens:
        h, pw = 0, 1
        for ch in t:
            h = (h * p + ord(ch) + 1) & mask
            pw = (pw * p) & mask
        hs.append(h)
        ps.append(pw)
    return np.array(hs, dtype=np.uint64), np.array(ps, dtype=np.uint64)


def train_from_counts(
    word_counts: Mapping[str, int] | tuple[Sequence[str], Sequence[int]],
    vocab_size: int,
    *,
    alphabet: Sequence[str] | None = None,
    min_frequency: int = 0,
    isolate: bool = False,
) -> TrainedBPE:
    """Train a BPE from pretoken counts, as ``tokenizers.trainers.BpeTrainer`` would.

    ``word_counts``: pretoken → count (or a ``(words, counts)`` pair of sequences), pretokens
    in the model's symbol space (byte-level unicode for byte-level models). ``alphabet``: the
    initial alphabet (default: the 256 byte-level symbols); characters of the words outside it
    are added, as the trainer's ``compute_alphabet`` does. ``vocab_size`` counts the alphabet.
    No special tokens. ``isolate``: see :func:`train_from_code_points`.
    """
    if isinstance(word_counts, tuple):
        words, counts = list(word_counts[0]), np.asarray(word_counts[1], dtype=np.int64)
    else:
        words = list(word_counts)
        counts = np.array(list(word_counts.values()), dtype=np.int64)
    if len(words) != len(counts):
        raise BPETrainingError(f"{len(words)} words but {len(counts)} counts")
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    cps = np.frombuffer("".join(words).encode("utf-32-le"), dtype=np.uint32)
    return train_from_code_points(
        cps,
        lengths,
        counts,
        vocab_size,
        alphabet=alphabet,
        min_frequency=min_frequency,
        isolate=isolate,
    )


def train_from_code_points(
    cps: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray,
    vocab_size: int,
    *,
    alphabet: Sequence[str] | None = None,
    min_frequency: int = 0,
    isolate: bool = False,
) -> TrainedBPE:
    """:func:`train_from_counts` on the words as one array of code points: word ``i`` is the
    next ``lengths[i]`` of ``cps``, seen ``counts[i]`` times (no Python string per word).

    ``isolate``: the compiled trainer runs in a child process that imports only numpy, numba
    and this module and gets the arrays through files — a process that has Ray, polars and the
    count table loaded does not also hold the trainer's arrays (``mixtrace bpe train``).
    """
    cps = np.asarray(cps, dtype=np.uint32)
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if len(lengths) != len(counts):
        raise BPETrainingError(f"{len(lengths)} words but {len(counts)} counts")
    if int(lengths.sum()) != cps.size or (lengths.size and lengths.min() < 0):
        raise BPETrainingError(
            f"word lengths sum to {int(lengths.sum())}, not the {cps.size} code points given"
        )
    if counts.size and counts.min() < 0:
        raise BPETrainingError("word counts must be non-negative")
    if counts.size and (counts.min() == 0 or lengths.min() == 0):  # drop empty words, zeros
        keep = (counts > 0) & (lengths > 0)
        cps = cps[np.repeat(keep, lengths)]
        counts, lengths = counts[keep], lengths[keep]
    # the alphabet: the base symbols and every character of the words
    seen = np.flatnonzero(np.bincount(cps)) if cps.size else np.zeros(0, np.int64)
    base = byte_alphabet() if alphabet is None else alphabet
    symbols = sorted(set(base) | set(map(chr, seen.tolist())))  # numbered by code point
    if vocab_size < len(symbols):
        raise BPETrainingError(
            f"vocab size {vocab_size} is below the alphabet ({len(symbols)} symbols)"
        )
    if len(symbols) >= int(_KEY):
        raise BPETrainingError(f"alphabet of {len(symbols)} symbols is too large")
    start = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        np.cumsum(lengths[:-1], out=start[1:])
    sym_cps = np.array([ord(s) for s in symbols], dtype=np.int64)
    table = np.full(int(sym_cps.max()) + 1, -1, dtype=np.int32)
    table[sym_cps] = np.arange(len(symbols), dtype=np.int32)
    sym = table[cps]
    del cps
    stats: dict[str, int] = {}
    tokens, merges, dups = _run(
        sym,
        start,
        lengths,
        counts,
        list(symbols),
        vocab_size,
        min_frequency,
        isolate=isolate,
        stats=stats,
    )
    return TrainedBPE(
        alphabet=tuple(symbols),
        merges=tuple(merges),
        vocab={t: i for i, t in enumerate(tokens)},
        duplicates=dups,
        peak_rss=stats.get("peak_rss"),
        engine="aot" if stats.get("aot") else "jit",
    )


# the compiled trainer's inputs, in order (arrays, then scalars); see
# trainer_core._train_arrays
_ARRAYS = ("sym", "start", "lengths", "counts", "tok_hash", "tok_pow", "mark")
_SCALARS = ("n_vocab", "vocab_size", "min_freq", "restrict", "skip_existing")


def _trainer_args(
    sym,
    start,
    lengths,
    counts,
    th,
    tp,
    mark,
    n_vocab,
    vocab_size,
    min_freq,
    restrict,
    skip_existing,
) -> tuple[tuple, bool]:
    """The compiled loop's arguments (``trainer_core._train``), its work arrays allocated, and
    whether its indices need 64 bits (``wide``)."""
    n_sym = len(sym)
    # postings (word, next): int32 when every index fits (initial ≤ n_sym, then ≤ 2 per merge)
    wide = 3 * n_sym + len(start) >= (1 << 31) - 1
    # capacities at their upper bounds (pairs, postings and heap entries: at most the initial
    # ones plus two per merged occurrence, < 3 per symbol), allocated here by numpy: pages
    # never written are never resident, and no array is ever copied to grow (numba's own
    # np.empty writes its pages)
    bound = 3 * n_sym + 16
    idx = np.int64 if wide else np.int32  # word, posting and pair indices
    args = (
        sym.astype(np.int32, copy=False),
        np.empty((bound, 2), idx),  # postings
        np.empty((bound, 5), idx),  # pairs: a, b, first posting, last word, stamp
        np.empty(bound, np.int64),  # pair counts
        np.empty((2 * bound, 2), np.int64),  # heap
        start.astype(np.int64),
        lengths.astype(np.int64),
        counts.astype(np.int64),
        th,
        tp,
        np.int64(n_vocab),
        np.int64(vocab_size),
        np.int64(min_freq),
        mark.astype(np.int8),
        bool(restrict),
        bool(skip_existing),
    )
    return args, wide


def status_bytes(field: str, pid: int | str | None = None, file: str = "status") -> int | None:
    """A size field of ``/proc/<pid>/status`` (``"VmRSS"``, ``"VmHWM"``...; or of another
    ``file`` of that form, e.g. ``"Pss"`` of ``smaps_rollup``) in bytes, of this process when
    ``pid`` is None; ``None`` when it cannot be read (no such process, no /proc)."""
    try:
        with open(f"/proc/{pid or 'self'}/{file}") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss(pid: int | None = None) -> int | None:
    """The peak resident size in bytes of this process (or of process ``pid``): its VmHWM,
    which belongs to the process's own memory map. (``getrusage``'s ru_maxrss is carried over
    from the parent across fork and exec on Linux: a child of a large process would report
    the parent's peak.) ``None`` when ``pid`` cannot be read (it ended)."""
    hwm = status_bytes("VmHWM", pid)
    if hwm is not None or pid is not None:
        return hwm
    import resource  # no /proc: this process's own figure, the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _train_in_child(arrays: dict[str, np.ndarray], scalars: dict[str, int]):
    """``trainer_core._train_arrays`` in a fresh ``python -m pipeline.bpe.trainer_child``
    process."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="mixtrace-bpe-") as tmp:
        d = Path(tmp)
        for name in _ARRAYS:
            np.save(d / f"{name}.npy", arrays[name], allow_pickle=False)
        (d / "scalars.json").write_text(json.dumps(scalars), encoding="utf-8")
        arrays.clear()  # the caller's references go; the child reads the files
        # the child imports this very copy of the package (a Ray worker's working dir, a
        # checkout not installed)
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.bpe.trainer_child", str(d)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            how = (
                f"killed by signal {-proc.returncode} (out of memory?)"
                if proc.returncode < 0
                else f"exit {proc.returncode}"
            )
            raise RuntimeError(
                f"the BPE training process failed ({how}): {proc.stderr.strip()[-2000:]}"
            )
        rows = np.load(d / "rows.npy", allow_pickle=False)
        stats = np.load(d / "stats.npy", allow_pickle=False)
    return rows, stats


def _run(
    sym: np.ndarray,
    start: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray,
    tokens: list[str],
    vocab_size: int,
    min_frequency: int = 0,
    *,
    mark: np.ndarray | None = None,
    skip_existing: bool = False,
    isolate: bool = False,
    stats: dict[str, int] | None = None,
) -> tuple[list[str], list[tuple[str, str]], int]:
    """Run the compiled trainer (in a child process when ``isolate``); returns (all tokens,
    the new merges, duplicate merges).

    ``tokens``: the existing tokens' strings by id (``sym`` holds their ids). ``stats``, when
    given, receives the trainer's array sizes (and from the child its ``peak_rss`` in bytes
    and ``aot``: 1 when it ran the ahead-of-time build, 0 the JIT)."""
    th, tp = _string_hashes(tokens)
    restrict = mark is not None
    arrays = {
        "sym": sym.astype(np.int32, copy=False),
        "start": start.astype(np.int64, copy=False),
        "lengths": lengths.astype(np.int64),  # a copy: updated in place
        "counts": counts.astype(np.int64, copy=False),
        "tok_hash": th,
        "tok_pow": tp,
        "mark": (mark if restrict else np.zeros(len(tokens), np.int8)).astype(np.int8),
    }
    scalars = {
        "n_vocab": len(tokens),
        "vocab_size": int(vocab_size),
        "min_freq": int(min_frequency),
        "restrict": int(restrict),
        "skip_existing": int(skip_existing),
    }
    if isolate:
        rows, figures = _train_in_child(arrays, scalars)
    else:
        from .trainer_core import _train_arrays

        rows, figures = _train_arrays(
            *(arrays[k] for k in _ARRAYS), *(scalars[k] for k in _SCALARS)
        )
    names = ("pairs", "postings", "heap_rows", "hash_slots", "pair_capacity", "post_capacity")
    got = dict(zip((*names, "peak_rss", "aot"), map(int, figures.tolist()), strict=False))
    logger.debug("trainer arrays: %s", got)
    if stats is not None:
        stats.update(got)
    tokens = list(tokens)
    merges: list[tuple[str, str]] = []
    duplicates = 0
    for a, b, r in rows.tolist():
        s = tokens[a] + tokens[b]
        if r == len(tokens):
            tokens.append(s)
        else:
            if tokens[r] != s:  # a 64-bit hash collision: never seen, but never silent
                raise BPETrainingError(f"hash collision between tokens {tokens[r]!r} and {s!r}")
            duplicates += 1
        merges.append((tokens[a], tokens[b]))
    return tokens, merges, duplicates


def continue_training(
    tokens: Sequence[str],
    encoded: Sequence[Sequence[int]],
    counts: Sequence[int] | np.ndarray,
    n_new: int,
    *,
    mark: Sequence[bool] | np.ndarray | None = None,
    min_frequency: int = 0,
) -> tuple[list[tuple[str, str]], list[str]]:
    """Continue BPE training from an existing vocabulary: up to ``n_new`` new tokens.

    ``tokens``: the existing tokens' strings by id; ``encoded``: each distinct word already
    tokenized by the existing model (its merges pre-applied), with ``counts``. A pair whose
    token already exists is not merged (the extension only adds new tokens). ``mark``: when
    given, only pairs with a marked side may merge (e.g. tokens holding Hangul bytes), so
    that text without marked tokens encodes exactly as before. Returns (new merges, new
    tokens), in order.
    """
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    start = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded):
        np.cumsum(lengths[:-1], out=start[1:])
    sym = np.fromiter((t for seq in encoded for t in seq), dtype=np.int64, count=int(lengths.sum()))
    m = None if mark is None else np.asarray(mark, dtype=np.int8)
    all_tokens, merges, _ = _run(
        sym,
        start,
        lengths,
        counts,
        list(tokens),
        len(tokens) + n_new,
        min_frequency,
        mark=m,
        skip_existing=True,
    )
    return merges, all_tokens[len(tokens) :]


def to_tokenizer(trained: TrainedBPE, pretokenizer: str):
    """An HF ``tokenizers.Tokenizer`` (byte-level pre-tokenizer and decoder) of a trained BPE,
    serialized by ``to_str()`` as the same ``tokenizer.json`` the HF trainer writes."""
    from tokenizers import models

    from forensics.training import byte_level_tokenizer

    model = models.BPE(vocab=dict(trained.vocab), merges=list(trained.merges))
    return byte_level_tokenizer(pretokenizer, model)

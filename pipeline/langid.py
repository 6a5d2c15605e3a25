"""Offline language identification (py3langid) plus a Hangul-share script signal.

Why py3langid: its model (langid.py's 97-language naive Bayes over byte n-grams) ships inside
the pip package (4.6 MB wheel, BSD), loads in under a second and needs only numpy. Measured on
``../shared/corpus`` (first 2,000 characters of up to 400 documents per language, one core;
``python bench/bench_langid.py``, which also prints the accuracy by prefix length):

==========  ====  ====  ====  ====  ====  =====  =====  ====  =========  =======
library      ko    en    ja    zh    de    fr     es     ru    MB/s/core  load
==========  ====  ====  ====  ====  ====  =====  =====  ====  =========  =======
py3langid   1.00  1.00  1.00  1.00  1.00  0.993  0.777  1.00  3.81       0.4 s
lingua 2.1  1.00  1.00  1.00  1.00  1.00  0.980  0.877  1.00  0.88       4.5 s
==========  ====  ====  ====  ====  ====  =====  =====  ====  =========  =======

(the "wrong" es/fr answers of both are mostly untranslated English help pages: both libraries
call them English with probability > 0.99). lingua is 4x slower on this text, takes ~1 GB
for its models in every worker (4.5 s to load warm, 19 s cold) and weighs 96 MB; fastText
models (GlotLID, lid.176) cannot be downloaded here.

The step classifies a batch at once (:class:`BatchClassifier`: py3langid's automaton advanced
for all documents together in numpy; py3langid's labels) on the first ``max_chars`` characters
(1,000 by default: see ``pipeline/README.md`` for accuracy by prefix length).

The Hangul share (Hangul syllables and jamo among all letters: ``\\p{Hangul}`` / ``\\pL``, RE2's
classes) comes from one numpy pass over the UTF-8 bytes (:func:`letter_counts`); the Korean
filters use it (``hangul_share``).
"""

from __future__ import annotations

import functools
import itertools
import threading
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.steps import Modifier, add_or_replace

__all__ = ["BatchClassifier", "LanguageID", "batch_classifier", "hangul_share", "load_identifier"]

_lock = threading.Lock()
_identifier = None


def load_identifier():
    """The process-wide py3langid identifier with normalised probabilities (loaded once)."""
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


@functools.cache
def _char_classes() -> np.ndarray:
    """Per code point: bit 0 letter (``\\pL``), bit 1 Hangul script (``\\p{Hangul}``), from
    RE2's own tables (the classes the regex version of these counts used)."""
    table = np.zeros(0x110000, np.uint8)
    cps = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)])
    data = "".join(map(chr, cps.tolist())).encode("utf-8")
    sizes = np.where(cps < 0x80, 1, np.where(cps < 0x800, 2, np.where(cps < 0x10000, 3, 4)))
    offsets = np.zeros(len(cps) + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    chars = pa.StringArray.from_buffers(
        len(cps), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)
    )
    letter = pc.match_substring_regex(chars, r"\pL").to_numpy(zero_copy_only=False)
    hangul = pc.match_substring_regex(chars, r"\p{Hangul}").to_numpy(zero_copy_only=False)
    table[cps] = letter.astype(np.uint8) | (hangul.astype(np.uint8) << 1)
    return table


def letter_counts(text: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(letters, hangul)`` per text: counts of ``\\pL`` and ``\\p{Hangul}`` characters,
    from one numpy pass over the UTF-8 bytes (code points decoded at their lead bytes, looked
    up in :func:`_char_classes`); the same values as two RE2 counts, several times faster
    (RE2 pays per match, i.e. per character here)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if pa.types.is_large_string(text.type):
        text = text.cast(pa.string())
    n = len(text)
    letters = np.zeros(n, np.int64)
    hangul = np.zeros(n, np.int64)
    if not n:
        return letters, hangul
    offs = np.frombuffer(text.buffers()[1], np.int32, count=n + 1, offset=text.offset * 4)
    data = text.buffers()[2]
    if data is None or offs[-1] == offs[0]:
        return letters, hangul
    b = np.frombuffer(data, np.uint8)[offs[0] : offs[-1]]
    rel = (offs - offs[0]).astype(np.int64)
    table = _char_classes()
    cls = table[b]  # right for ASCII bytes; continuation bytes are cleared, leads fixed below
    multi = np.flatnonzero(b >= 0xC0)  # lead bytes of multi-byte characters
    cls[(b & 0xC0) == 0x80] = 0
    if len(multi):
        # the 4 bytes from each lead as one big-endian word; 3-byte characters (CJK, Hangul)
        # computed for all, then 2- and 4-byte ones fixed
        padded = np.concatenate([b, np.zeros(3, np.uint8)])
        w = np.lib.stride_tricks.sliding_window_view(padded, 4)[multi]
        w = w.copy().view(">u4").ravel().astype(np.int64)
        cp = ((w >> 12) & 0xF000) | ((w >> 10) & 0xFC0) | ((w >> 8) & 0x3F)
        two = np.flatnonzero(w < 0xE0000000)
        cp[two] = ((w[two] >> 18) & 0x7C0) | ((w[two] >> 16) & 0x3F)
        four = np.flatnonzero(w >= 0xF0000000)
        x = w[four]
        cp[four] = ((x >> 6) & 0x1C0000) | ((x >> 4) & 0x3F000) | ((x >> 2) & 0xFC0) | (x & 0x3F)
        cls[multi] = table[np.minimum(cp, 0x10FFFF)]
    # per text: sums over its byte range (null and empty texts have an empty range)
    nonempty = rel[1:] > rel[:-1]
    starts = rel[:-1][nonempty]
    for out, bit in ((letters, 1), (hangul, 2)):
        flags = (cls & bit).view(np.int8) if bit == 1 else ((cls >> 1) & 1).view(np.int8)
        out[nonempty] = np.add.reduceat(flags, starts, dtype=np.int64)
    return letters, hangul


def hangul_share(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Share of Hangul (syllables and jamo) among the letters of each text (0 without letters)."""
    n_letters, n_hangul = letter_counts(text)
    share = n_hangul / np.maximum(n_letters, 1)
    return pa.array(share.astype(np.float32), pa.float32())


class BatchClassifier:
    """py3langid's ``classify`` for a batch of texts, with the per-byte work vectorised.

    py3langid walks its byte-level automaton in a Python loop per byte (``visit_counts``),
    ~70 % of its time. Here the automaton advances one byte position for every document of
    the batch at once (numpy gathers over the documents still running, longest first); the
    feature counts, the naive-Bayes scores, the length-tempered softmax and the alias folding
    are py3langid's (same model arrays, read from the identifier at call time, so
    ``set_languages`` applies). Labels are py3langid's; probabilities agree to float32
    rounding (summation order). ``tests/test_pipeline_fastfilters.py`` compares both on real
    documents. Falls back to ``classify`` per text if the identifier lacks the expected
    model arrays (another py3langid version)."""

    def __init__(self, identifier) -> None:
        self.ident = identifier
        try:
            nm = identifier.tk_nextmove
            self.nm = np.frombuffer(nm, dtype=np.dtype(nm.typecode))
            self.rowbase = np.asarray(identifier.tk_row, np.int64) << 8
            self.out = np.asarray(identifier.tk_output, np.int64)
            self.ok = self.out.ndim == 1 and hasattr(identifier, "nb_ptc")
        except (AttributeError, TypeError, ValueError):
            self.ok = False

    @staticmethod
    def encode(text: str) -> bytes:
        """py3langid's ``_encode`` of a ``str``."""
        if text.isupper():
            text = text.lower()
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return text.encode("utf8", errors="surrogatepass")

    def _features(self, encoded: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """``(document, feature)`` for every feature the automaton emits."""
        n = len(encoded)
        lens = np.fromiter((len(b) for b in encoded), np.int64, n)
        maxlen = int(lens.max()) if n else 0
        if not maxlen:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        order = np.argsort(-lens, kind="stable")
        lens_o = lens[order]
        # bytes[t, i]: byte t of the i-th longest document (0-padded)
        padded = b"".join(encoded[i].ljust(maxlen, b"\0") for i in order)
        data = np.frombuffer(padded, np.uint8).reshape(n, maxlen).T.copy()
        active = np.searchsorted(-lens_o, -np.arange(maxlen), side="left")
        states = np.zeros((maxlen, n), np.int64)
        state = np.zeros(n, np.int64)
        nm, rowbase = self.nm, self.rowbase
        for t in range(maxlen):
            a = active[t]
            st = nm[rowbase[state[:a]] + data[t, :a]]
            state[:a] = st
            states[t, :a] = st
        valid = np.arange(maxlen)[:, None] < lens_o[None, :]
        feats = np.where(valid, self.out[states], -1)
        t_idx, col = np.nonzero(feats >= 0)
        return order[col], feats[t_idx, col]

    def classify(self, texts: list[str]) -> tuple[list[str], list[float]]:
        ident = self.ident
        if not self.ok:
            res = [ident.classify(t) for t in texts]
            return [r[0] for r in res], [float(r[1]) for r in res]
        n = len(texts)
        encoded = [self.encode(t) for t in texts]
        doc, feat = self._features(encoded)
        nb_ptc, nb_pc, classes = ident.nb_ptc, ident.nb_pc, ident.nb_classes
        # the batch's distinct features (a lookup table, no sort); per chunk of documents the
        # (document, feature) counts by bincount, then each document's log-count vector times
        # its rows of the model, as py3langid does
        present = np.zeros(nb_ptc.shape[0] + 1, np.int64)
        present[feat + 1] = 1
        remap = np.cumsum(present)
        used = np.flatnonzero(present[1:])
        col = remap[feat + 1] - 1
        table = nb_ptc[used].astype(np.float32)
        u = len(used)
        scores = np.zeros((n, len(classes)), np.float32)
        has = np.zeros(n, bool)
        has[doc] = True
        chunk = max(1, min(n, (1 << 21) // max(u, 1)))  # <= 2M counters per chunk
        order = np.argsort(doc, kind="stable")
        doc_s, col_s = doc[order], col[order]
        bounds = np.searchsorted(doc_s, np.arange(0, n + chunk, chunk)).tolist()
        for k, (a, b) in enumerate(itertools.pairwise(bounds)):
            if a == b:
                continue
            lo = k * chunk
            rows = min(chunk, n - lo)
            counts = np.bincount((doc_s[a:b] - lo) * u + col_s[a:b], minlength=rows * u)
            nz = np.flatnonzero(counts)
            weights = np.log1p(counts[nz].astype(np.float32))
            r, c = nz // u, nz % u
            starts = np.searchsorted(r, np.arange(rows + 1)).tolist()
            for i in range(rows):
                x, y = starts[i], starts[i + 1]
                if x < y:
                    scores[lo + i] = weights[x:y] @ table[c[x:y]]
        scores[has] += nb_pc
        if getattr(ident, "_norm_probs", True):
            lens = np.fromiter((len(b) or 1 for b in encoded), np.float64, n)
            scores *= (1.0 / np.sqrt(lens)).astype(np.float32)[:, None]
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
            for i, j in getattr(ident, "_alias_pairs", ()):
                scores[:, i] += scores[:, j]
                scores[:, j] = 0.0
        else:  # raw scores (not used by the pipeline): per text
            res = [ident.classify(t) for t in texts]
            return [r[0] for r in res], [float(r[1]) for r in res]
        best = scores.argmax(axis=1)
        conf = scores[np.arange(n), best]
        return [classes[i] for i in best.tolist()], conf.astype(np.float64).tolist()


_batch: BatchClassifier | None = None


def batch_classifier() -> BatchClassifier:
    """The process-wide :class:`BatchClassifier` over :func:`load_identifier`."""
    global _batch
    ident = load_identifier()
    with _lock:
        if _batch is None or _batch.ident is not ident:
            _batch = BatchClassifier(ident)
    return _batch


class LanguageID(Modifier):
    """Sets ``lang`` (ISO 639-1 code) and ``lang_score`` (probability) per document, and
    ``hangul_share``.

    Only the first ``max_chars`` characters are classified. Rows whose ``lang`` is already set
    (an input declared with ``lang:``, e.g. code) keep it with score 1.0. ``min_chars``: texts
    with fewer letters get ``und`` and score 0. ``hangul_override``: a text whose Hangul share
    is at least this value is labelled ``ko`` whatever the model says (keeps the model's score
    when it agrees, else the share); ``None`` disables the override.
    """

    name = "langid"

    def __init__(
        self,
        max_chars: int = 2000,
        min_chars: int = 1,
        hangul_override: float | None = 0.8,
        languages: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.hangul_override = hangul_override
        self.languages = languages

    def modify(self, table: pa.Table) -> pa.Table:
        ident = load_identifier()
        if self.languages:
            ident.set_languages(self.languages)
        text = table["text"]
        letters, hangul = letter_counts(text)
        share = pa.array((hangul / np.maximum(letters, 1)).astype(np.float32), pa.float32())
        n_letters = letters.tolist()
        preset = (
            table["lang"].to_pylist() if "lang" in table.column_names else [None] * len(n_letters)
        )
        shares = share.to_pylist()
        todo = [
            i
            for i, (n, pre) in enumerate(zip(n_letters, preset, strict=True))
            if pre is None and n >= self.min_chars
        ]
        langs: list[str] = ["und"] * len(n_letters)
        scores: list[float] = [0.0] * len(n_letters)
        for i, pre in enumerate(preset):
            if pre is not None:
                langs[i], scores[i] = pre, 1.0
        if todo:
            head = pc.utf8_slice_codeunits(text, 0, self.max_chars)
            if len(todo) < len(n_letters):
                head = head.take(pa.array(todo, pa.int64()))
            labels, probs = batch_classifier().classify(head.to_pylist())
            for i, lang, score in zip(todo, labels, probs, strict=True):
                s = shares[i]
                if self.hangul_override is not None and s >= self.hangul_override and lang != "ko":
                    self.stats.count("hangul_override")
                    lang, score = "ko", s
                langs[i], scores[i] = lang, float(score)
        table = add_or_replace(table, "lang", pa.array(langs, pa.string()))
        table = add_or_replace(table, "lang_score", pa.array(scores, pa.float32()))
        return add_or_replace(table, "hangul_share", share)

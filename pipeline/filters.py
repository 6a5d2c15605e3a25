"""Quality filters with per-language thresholds.

* :class:`LengthFilter` -- empty, too short, too long (bytes);
* :class:`LanguageFilter` -- allowed languages and a minimum language score per language;
* :class:`GopherQuality`, :class:`GopherRepetition`, :class:`FineWebQuality` -- datatrove's
  filters (``datatrove.pipeline.filters``) with their parameters, defaults and reasons, per
  language, words split on whitespace (:class:`SpaceWordTokenizer`; no spaCy/Kiwi: Korean words
  are space-separated eojeol, Kiwi runs at ~0.06 MB/s/core here). Two implementations:
  ``fast`` (default), a vectorised re-implementation over the whole batch
  (:mod:`pipeline.textstats`: Arrow splits and regexes, exact n-gram grouping in numpy) that
  gives datatrove's decisions and reasons -- ``tests/test_pipeline_fastfilters.py`` checks it
  against datatrove's own code on real documents; and ``datatrove``, datatrove's ``filter()``
  per document (the reference). The ``fast`` path also returns the signals its thresholds were
  tested against as score columns (``gopher_*``, ``gopher_rep_*``, ``fineweb_*``; see
  :data:`pipeline.writer.FILTER_SCORE_FIELDS`), null where the filter did not compute them;
* :class:`KoreanFilter` -- Hangul share, repeated jamo ("ㅋㅋㅋㅋ"), gambling/adult spam terms;
* :class:`KoreanBoilerplate` -- removes news bylines and copyright lines ("무단전재 및 재배포
  금지", "홍길동 기자 hong@...", "Copyright ⓒ ...") and rejects documents that were mostly
  boilerplate.

Per-language parameters come as ``{"default": {...}, "ko": {...}, "zh": {"enabled": false}}``
(:class:`PerLanguage`): a language's entry overrides the default's keys.

Every filter is vectorised over Arrow batches (``pyarrow.compute``, numpy); see
``bench/bench_pipeline.py`` for their speed next to datatrove's on the same documents.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.steps import Filter
from pipeline.textstats import (
    Lists,
    NGrams,
    Words,
    as_text_array,
    dup_elements,
    python_alpha_class,
    python_space_class,
    re2_class,
    re2_literal,
    split_lines_keep_empty,
    split_paragraphs,
    split_regex_lines,
    splitlines,
)
from pipeline.writer import FILTER_SCORE_FIELDS

__all__ = [
    "BOILERPLATE_PATTERNS",
    "DEFAULT_SPAM_TERMS",
    "FineWebQuality",
    "GopherQuality",
    "GopherRepetition",
    "KoreanBoilerplate",
    "KoreanFilter",
    "LanguageFilter",
    "LengthFilter",
    "PerLanguage",
    "SpaceWordTokenizer",
]


class PerLanguage:
    """Per-language parameters: ``for_lang(lang)`` = default's keys updated by ``lang``'s.

    ``None`` for a language (or ``enabled: false``) disables the step for that language.
    """

    def __init__(self, params: Mapping[str, Any] | None = None, **defaults: Any) -> None:
        params = dict(params or {})
        base = dict(defaults)
        base.update(params.pop("default", None) or {})
        self.default = base
        self.overrides = params

    def for_lang(self, lang: str) -> dict[str, Any] | None:
        if lang in self.overrides and self.overrides[lang] is None:
            return None
        merged = dict(self.default)
        merged.update(self.overrides.get(lang) or {})
        if not merged.pop("enabled", True):
            return None
        return merged


def _reasons(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


def _where(mask: pa.Array, reason: str, current: pa.Array) -> pa.Array:
    """Set ``reason`` where ``mask`` is true and no reason was set yet."""
    mask = pc.fill_null(mask, False)
    return pc.if_else(pc.and_(mask, pc.is_null(current)), reason, current)


class LengthFilter(Filter):
    """Rejects empty documents (``empty``), fewer than ``min_chars`` non-space characters
    (``too_short``) and more than ``max_bytes`` bytes (``too_long``)."""

    name = "length"

    def __init__(self, min_chars: int = 1, max_bytes: int | None = 5_000_000) -> None:
        super().__init__()
        self.min_chars = min_chars
        self.max_bytes = max_bytes

    def decide(self, table):
        n = table.num_rows
        reasons = pa.nulls(n, pa.string())
        nbytes = table["n_bytes"]
        reasons = _where(pc.equal(nbytes, 0), "empty", reasons)
        if self.max_bytes:
            reasons = _where(pc.greater(nbytes, self.max_bytes), "too_long", reasons)
        if self.min_chars > 1:
            # only rows that are short in bytes can be short in characters: count those
            nonspace = pc.subtract(
                pc.utf8_length(table["text"]), pc.count_substring_regex(table["text"], r"\s")
            )
            reasons = _where(pc.less(nonspace, self.min_chars), "too_short", reasons)
        return reasons, {}


class LanguageFilter(Filter):
    """Keeps documents in ``languages`` (all when ``None``) whose ``lang_score`` reaches
    ``min_score`` (a number, or a mapping ``{"default": x, "ko": y}``)."""

    name = "language"

    def __init__(
        self,
        languages: list[str] | None = None,
        min_score: float | Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.languages = list(languages) if languages else None
        if isinstance(min_score, Mapping):
            self.min_score = dict(min_score)
        else:
            self.min_score = {"default": float(min_score or 0.0)}

    def decide(self, table):
        lang = pc.fill_null(table["lang"], "und")
        reasons = pa.nulls(table.num_rows, pa.string())
        if self.languages:
            allowed = pc.is_in(lang, value_set=pa.array(self.languages, pa.string()))
            reasons = _where(pc.invert(allowed), "language_not_selected", reasons)
        default = float(self.min_score.get("default", 0.0))
        langs = lang.to_pylist()
        thr = pa.array([float(self.min_score.get(x, default)) for x in langs], pa.float32())
        low = pc.less(pc.fill_null(table["lang_score"], 0.0), thr)
        return _where(low, "low_lang_score", reasons), {}


# --------------------------------------------------------------------------------------
# datatrove filters


def _space_tokenizer_class():
    from datatrove.utils.word_tokenizers import WordTokenizer

    class _SpaceWordTokenizer(WordTokenizer):
        """Whitespace word splitting for datatrove's filters (eojeol for Korean)."""

        def __init__(self) -> None:
            super().__init__("space")

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [s for s in text.splitlines() if s.strip()]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            spans, pos = [], 0
            for line in text.splitlines(keepends=True):
                if line.strip():
                    spans.append((pos, pos + len(line.rstrip("\n"))))
                pos += len(line)
            return spans

        def __reduce__(self):
            return (SpaceWordTokenizer, ())

    return _SpaceWordTokenizer


_TOKENIZER = None


def SpaceWordTokenizer():
    """The process-wide datatrove ``WordTokenizer`` that splits on whitespace. One shared
    instance, so that datatrove's ``split_into_words`` cache (keyed on the tokenizer) lets the
    three datatrove filters split each document once."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = _space_tokenizer_class()()
    return _TOKENIZER


_IGNORED_ARGS = {"self", "exclusion_writer", "language"}


def _datatrove_defaults(cls) -> dict[str, Any]:
    """The keyword parameters of a datatrove filter class and their defaults."""
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in _IGNORED_ARGS and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def _as_param(key: str, value: Any) -> Any:
    if key.endswith("n_grams") and value is not None:
        return tuple(tuple(x) for x in value)
    if key == "stop_chars" and value is not None and not isinstance(value, str):
        return tuple(value)
    return value


class _DatatroveFilter(Filter):
    """A datatrove ``BaseFilter`` with per-language parameters.

    ``implementation="fast"`` (default): the vectorised re-implementation of the subclass
    (:mod:`pipeline.textstats`), which gives datatrove's decisions and reasons (tested on real
    documents against datatrove's own code); ``"datatrove"``: datatrove's ``filter()`` per
    document, one instance per language (the reference, and the fallback for anything the
    fast version does not cover). Parameters and their defaults are datatrove's.

    Score columns (:attr:`score_columns`: column -> key of the subclass's signals): the fast
    path returns the signals it computed for its decisions (nothing is computed twice), as
    float32/int32 columns (types from :data:`pipeline.writer.FILTER_SCORE_FIELDS`). A value is
    null where it was not computed: rows of a language the filter is off for, every row of the
    ``datatrove`` implementation, rows the subclass stopped at an earlier check (see its
    docstring), and undefined ratios (a zero denominator). Rows rejected by an earlier *step*
    never reach the filter: their columns are null in the written Parquet.
    """

    defaults: ClassVar[dict[str, Any]] = {}
    #: score column -> key of the dict of signals returned by ``_decide_fast``
    score_columns: ClassVar[dict[str, str]] = {}

    def __init__(
        self, params: Mapping[str, Any] | None = None, implementation: str = "fast"
    ) -> None:
        super().__init__()
        params = dict(params or {})
        implementation = params.pop("implementation", implementation)
        if implementation not in ("fast", "datatrove"):
            raise ValueError(
                f"implementation must be 'fast' or 'datatrove', not {implementation!r}"
            )
        self.implementation = implementation
        self.params = PerLanguage(params, **self.defaults)
        self._filters: dict[str, Any] = {}
        self._merged: dict[str, dict[str, Any] | None] = {}
        known = _datatrove_defaults(self._factory())
        for lang in ["default", *self.params.overrides]:
            p = self.params.default if lang == "default" else self.params.overrides[lang]
            unknown = set(p or {}) - set(known) - {"enabled"}
            if unknown:
                raise TypeError(
                    f"{self.name}: unknown parameter(s) {sorted(unknown)} for {lang!r} "
                    f"(known: {', '.join(sorted(known))})"
                )

    @abstractmethod
    def _factory(self):
        """The datatrove filter class (the reference implementation)."""

    @abstractmethod
    def _decide_fast(
        self, text: pa.Array, p: dict[str, Any]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reasons (object array, None = keep) for texts of one language with parameters
        ``p`` (datatrove's defaults updated with the configuration), and the signals computed
        on the way (float arrays aligned with ``text``, NaN = not computed; keys as in
        :attr:`score_columns`' values, absent = not computed at all)."""

    def params_for(self, lang: str) -> dict[str, Any] | None:
        """All parameters for ``lang`` (datatrove's defaults, then the config), or None when
        the filter is off for ``lang``."""
        if lang not in self._merged:
            p = self.params.for_lang(lang)
            if p is None:
                self._merged[lang] = None
            else:
                merged = _datatrove_defaults(self._factory())
                merged.update({k: _as_param(k, v) for k, v in p.items()})
                self._merged[lang] = merged
        return self._merged[lang]

    def _filter_for(self, lang: str):
        if lang not in self._filters:
            p = self.params.for_lang(lang)
            if p is None:
                self._filters[lang] = None
            else:
                p = {k: _as_param(k, v) for k, v in p.items()}
                self._filters[lang] = self._factory()(language=SpaceWordTokenizer(), **p)
        return self._filters[lang]

    def _decide_datatrove(self, texts: list[str], lang: str) -> list[str | None]:
        from datatrove.data import Document as DTDocument

        f = self._filter_for(lang)
        out: list[str | None] = []
        for i, text in enumerate(texts):
            try:
                res = f.filter(DTDocument(text=text, id=str(i)))
            except ZeroDivisionError:
                res = (False, "no_words")
            if res is True or (isinstance(res, tuple) and res[0]):
                out.append(None)
            elif isinstance(res, tuple):
                out.append(str(res[1] or "rejected"))
            else:
                out.append("rejected" if not res else None)
        return out

    def decide(self, table):
        text = as_text_array(table["text"])
        n = len(text)
        langs = pc.fill_null(table["lang"], "und")
        if isinstance(langs, pa.ChunkedArray):
            langs = langs.combine_chunks()
        lang_np = langs.to_numpy(zero_copy_only=False)
        out = np.full(n, None, dtype=object)
        values = {col: np.full(n, np.nan) for col in self.score_columns}
        for lang in sorted(set(lang_np.tolist())):
            p = self.params_for(lang)
            if p is None:
                continue
            idx = np.flatnonzero(lang_np == lang)
            sub = text if len(idx) == n else text.take(pa.array(idx))
            if self.implementation == "datatrove":
                out[idx] = self._decide_datatrove(sub.to_pylist(), lang)
            else:
                out[idx], signals = self._decide_fast(sub, p)
                for col, key in self.score_columns.items():
                    if key in signals:
                        values[col][idx] = signals[key]
        return pa.array(out.tolist(), pa.string()), _score_arrays(values)

    def decide_texts(self, texts: list[str], lang: str = "und") -> list[str | None]:
        """Reasons for plain strings of one language (tests, scripts)."""
        p = self.params_for(lang)
        if p is None:
            return [None] * len(texts)
        if self.implementation == "datatrove":
            return self._decide_datatrove(texts, lang)
        return self._decide_fast(pa.array(texts, pa.string()), p)[0].tolist()


def _score_arrays(values: Mapping[str, np.ndarray]) -> dict[str, pa.Array]:
    """Score columns from float arrays (NaN = null), typed as in ``FILTER_SCORE_FIELDS``."""
    out = {}
    for col, v in values.items():
        typ = FILTER_SCORE_FIELDS[col]
        null = np.isnan(v)
        if pa.types.is_integer(typ):
            v = np.where(null, 0, v).astype(typ.to_pandas_dtype())
        else:
            v = v.astype(typ.to_pandas_dtype())
        out[col] = pa.array(v, typ, mask=null if null.any() else None)
    return out


class _Decisions:
    """First-failing-check bookkeeping: ``reject(mask, reason)`` sets ``reason`` on rows that
    are still open (datatrove returns at the first failing check)."""

    def __init__(self, n: int) -> None:
        self.out = np.full(n, None, dtype=object)
        self.open = np.ones(n, bool)

    def reject(self, mask: np.ndarray, reason: str) -> None:
        m = mask & self.open
        if m.any():
            self.out[m] = reason
            self.open &= ~m

    def any_open(self) -> bool:
        return bool(self.open.any())


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` as Python computes it (float64), NaN where ``den`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num.astype(np.float64) / den.astype(np.float64)
    return np.where(den == 0, np.nan, r)


def _np(arr) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


class GopherRepetition(_DatatroveFilter):
    """datatrove's ``GopherRepetitionFilter`` (duplicate lines/paragraphs, top n-grams,
    duplicated n-grams) with per-language thresholds.

    Score columns (float32, shares of the document's characters unless said otherwise):
    ``gopher_rep_dup_line_frac`` (duplicate lines / lines, lines = ``re.split("\\n+")``),
    ``gopher_rep_dup_line_char_frac`` (characters of duplicate lines),
    ``gopher_rep_top_2gram_frac`` (the most frequent word 2-gram, times its count),
    ``gopher_rep_dup_5gram_frac`` and ``gopher_rep_dup_10gram_frac`` (characters in
    duplicated 5-/10-grams: datatrove's ``find_all_duplicate``). As datatrove, the
    filter stops at a document's first failing check, and a row has the values datatrove
    computes for it: null for a check that is not configured for the language (e.g.
    ``top_n_grams: []``) or that the row did not reach (rejected by an earlier check, or
    ``empty``), whatever the other rows of its batch. A top n-gram share is also null for
    documents of fewer than ``n`` words (datatrove skips that check). Kept rows have every
    configured value.
    """

    name = "gopher_repetition"
    score_columns: ClassVar[dict[str, str]] = {
        "gopher_rep_dup_line_frac": "dup_line_frac",
        "gopher_rep_dup_line_char_frac": "dup_line_char_frac",
        "gopher_rep_top_2gram_frac": "top_2_gram",
        "gopher_rep_dup_5gram_frac": "duplicated_5_n_grams",
        "gopher_rep_dup_10gram_frac": "duplicated_10_n_grams",
    }

    def _factory(self):
        from datatrove.pipeline.filters import GopherRepetitionFilter

        return GopherRepetitionFilter

    @staticmethod
    def signals(text: pa.Array, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every ratio the filter compares with a threshold, for every text (NaN where
        datatrove would not compute it): ``dup_para_frac``, ``dup_para_char_frac``,
        ``dup_line_frac``, ``dup_line_char_frac``, ``top_<n>_gram``,
        ``duplicated_<n>_n_grams``."""
        text = as_text_array(text)
        nchars = _np(pc.utf8_length(text)).astype(np.int64)
        paras = Lists.from_list_array(split_paragraphs(text), len(text))
        lines = Lists.from_list_array(split_regex_lines(text), len(text))
        pd, pc_ = dup_elements(paras)
        ld, lc = dup_elements(lines)
        out = {
            "dup_para_frac": _ratio(pd, paras.counts),
            "dup_para_char_frac": _ratio(pc_, nchars),
            "dup_line_frac": _ratio(ld, lines.counts),
            "dup_line_char_frac": _ratio(lc, nchars),
        }
        ng = NGrams(Words(text))
        for n, _ in p["top_n_grams"] or ():
            chars, has = ng.top_duplicate_chars(n)
            out[f"top_{n}_gram"] = np.where(has, _ratio(chars, nchars), np.nan)
        for n, _ in p["dup_n_grams"] or ():
            out[f"duplicated_{n}_n_grams"] = _ratio(ng.all_duplicate_chars(n), nchars)
        return out

    def _decide_fast(self, text, p):
        n = len(text)
        d = _Decisions(n)
        # the signals, keyed as in signals(): a value for the rows that reached the check
        # (datatrove computes nothing after the first failing one), NaN for the others -- the
        # kernels run over the whole batch, but what a row gets must not depend on its batch
        sig: dict[str, np.ndarray] = {}
        nchars = _np(pc.utf8_length(text)).astype(np.int64)
        d.reject(nchars == 0, "empty")
        with np.errstate(invalid="ignore"):
            for split, frac_key, char_key in (
                (split_paragraphs, "dup_para_frac", "dup_para_char_frac"),
                (split_regex_lines, "dup_line_frac", "dup_line_char_frac"),
            ):
                if not d.any_open() or not (p[frac_key] or p[char_key]):
                    continue
                parts = Lists.from_list_array(split(text), n)
                dups, chars = dup_elements(parts)
                reached = d.open.copy()
                frac = sig[frac_key] = np.where(reached, _ratio(dups, parts.counts), np.nan)
                char = sig[char_key] = np.where(reached, _ratio(chars, nchars), np.nan)
                if p[frac_key]:
                    d.reject(frac > p[frac_key], frac_key)
                if p[char_key]:
                    d.reject(char > p[char_key], char_key)
            if d.any_open() and (p["top_n_grams"] or p["dup_n_grams"]):
                ng = NGrams(Words(text))
                for k, thr in p["top_n_grams"] or ():
                    if not d.any_open():
                        break
                    chars, has = ng.top_duplicate_chars(k)
                    r = np.where(has & d.open, _ratio(chars, nchars), np.nan)
                    sig[f"top_{k}_gram"] = r
                    d.reject(r > thr, f"top_{k}_gram")  # NaN (no n-gram): no rejection
                for k, thr in p["dup_n_grams"] or ():
                    if not d.any_open():
                        break
                    reached = d.open.copy()  # computed for these rows only
                    chars = ng.all_duplicate_chars(k, reached)
                    r = np.where(reached, _ratio(chars, nchars), np.nan)
                    sig[f"duplicated_{k}_n_grams"] = r
                    d.reject(r > thr, f"duplicated_{k}_n_grams")
        return d.out, sig


_STOP_WORDS_DEFAULT = ["the", "be", "to", "of", "and", "that", "have", "with"]


@functools.cache
def _symbol_word_re() -> str:
    from datatrove.utils.text import PUNCTUATION_SET

    return "^" + re2_class(ord(c) for c in PUNCTUATION_SET) + "+$"


class GopherQuality(_DatatroveFilter):
    """datatrove's ``GopherQualityFilter`` (word counts and lengths, symbols, bullets,
    ellipses, alphabetic words, stop words) with per-language thresholds.

    Score columns (every signal is computed for every row the filter sees, whichever check
    rejects it; null only for undefined ratios, e.g. no words): ``gopher_words`` (int32,
    whitespace-separated words that are not only punctuation: what ``min_doc_words`` /
    ``max_doc_words`` test), ``gopher_mean_word_len`` (their mean length in characters),
    ``gopher_symbol_word_ratio`` (the larger of ``#`` and ``...``/``…`` counts per word),
    ``gopher_bullet_lines_frac`` (lines starting with ``•`` or ``-``),
    ``gopher_ellipsis_lines_frac`` (lines ending with an ellipsis), ``gopher_alpha_words_frac``
    (words holding an alphabetic character), ``gopher_stop_words`` (int32, distinct stop words
    present; the configured list, else datatrove's English one).
    """

    name = "gopher_quality"
    score_columns: ClassVar[dict[str, str]] = {
        "gopher_words": "n_non_symbol_words",
        "gopher_mean_word_len": "avg_word_length",
        "gopher_symbol_word_ratio": "symbol_word_ratio",
        "gopher_bullet_lines_frac": "bullet_lines_ratio",
        "gopher_ellipsis_lines_frac": "end_ellipsis_lines_ratio",
        "gopher_alpha_words_frac": "alpha_words_ratio",
        "gopher_stop_words": "stop_words",
    }

    def _factory(self):
        from datatrove.pipeline.filters import GopherQualityFilter

        return GopherQualityFilter

    @staticmethod
    def signals(text: pa.Array, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``n_words``, ``n_non_symbol_words``, ``avg_word_length`` (of non-symbol words),
        ``hash_ratio``, ``ellipsis_ratio``, ``symbol_word_ratio`` (the larger of the two),
        ``n_lines``, ``bullet_lines_ratio``, ``end_ellipsis_lines_ratio``,
        ``alpha_words_ratio``, ``stop_words`` (distinct)."""
        text = as_text_array(text)
        words = Words(text)
        vals = words.values
        non_symbol = ~_np(pc.match_substring_regex(vals, _symbol_word_re())).astype(bool)
        n_ns = words.per_doc_sum(non_symbol)
        len_ns = words.per_doc_sum(non_symbol, words.char_len.astype(np.float64))
        hashes = _np(pc.count_substring(text, "#")).astype(np.int64)
        ell = _np(pc.count_substring(text, "...")).astype(np.int64) + _np(
            pc.count_substring(text, "\u2026")
        ).astype(np.int64)
        lines = splitlines(text)
        sp = python_space_class()
        bullets = _np(pc.match_substring_regex(lines.values, f"^{sp}*[\u2022-]")).astype(bool)
        end_ell = _np(pc.match_substring_regex(lines.values, f"(?:\\.\\.\\.|\u2026){sp}*$"))
        alpha = _np(pc.match_substring_regex(vals, python_alpha_class())).astype(bool)
        stop = list(_STOP_WORDS_DEFAULT if p.get("stop_words") is None else p["stop_words"])
        n_stop = np.zeros(words.n_docs, np.int64)
        if stop and len(vals):
            idx = _np(pc.fill_null(pc.index_in(vals, value_set=pa.array(stop, pa.string())), -1))
            hit = idx >= 0
            if hit.any():
                key = words.doc[hit] * len(stop) + idx[hit].astype(np.int64)
                n_stop = np.bincount(np.unique(key) // len(stop), minlength=words.n_docs)
        hash_ratio = _ratio(hashes, words.counts)
        ellipsis_ratio = _ratio(ell, words.counts)
        return {
            "n_words": words.counts,
            "n_non_symbol_words": n_ns,
            "avg_word_length": _ratio(len_ns, n_ns),
            "hash_ratio": hash_ratio,
            "ellipsis_ratio": ellipsis_ratio,
            "symbol_word_ratio": np.fmax(hash_ratio, ellipsis_ratio),
            "n_lines": lines.counts,
            "bullet_lines_ratio": _ratio(lines.per_doc_sum(bullets), lines.counts),
            "end_ellipsis_lines_ratio": _ratio(
                lines.per_doc_sum(end_ell.astype(bool)), lines.counts
            ),
            "alpha_words_ratio": _ratio(words.per_doc_sum(alpha), words.counts),
            "stop_words": n_stop.astype(np.int64),
        }

    def _decide_fast(self, text, p):
        s = self.signals(text, p)
        d = _Decisions(len(text))
        n_ns, n_words, n_lines = s["n_non_symbol_words"], s["n_words"], s["n_lines"]
        with np.errstate(invalid="ignore"):
            if p["min_doc_words"]:
                d.reject(n_ns < p["min_doc_words"], "gopher_short_doc")
            if p["max_doc_words"]:
                d.reject(n_ns > p["max_doc_words"], "gopher_long_doc")
            avg = s["avg_word_length"]  # np.mean of nothing is NaN: both tests false
            if p["min_avg_word_length"]:
                d.reject(avg < p["min_avg_word_length"], "gopher_below_avg_threshold")
            if p["max_avg_word_length"]:
                d.reject(avg > p["max_avg_word_length"], "gopher_above_avg_threshold")
            if p["max_symbol_word_ratio"]:
                d.reject(n_words == 0, "no_words")  # ZeroDivisionError in datatrove
                d.reject(s["hash_ratio"] > p["max_symbol_word_ratio"], "gopher_too_many_hashes")
                d.reject(
                    s["ellipsis_ratio"] > p["max_symbol_word_ratio"], "gopher_too_many_ellipsis"
                )
            if p["max_bullet_lines_ratio"]:
                d.reject(n_lines == 0, "no_words")
                d.reject(
                    s["bullet_lines_ratio"] > p["max_bullet_lines_ratio"], "gopher_too_many_bullets"
                )
            if p["max_ellipsis_lines_ratio"]:
                d.reject(n_lines == 0, "no_words")
                d.reject(
                    s["end_ellipsis_lines_ratio"] > p["max_ellipsis_lines_ratio"],
                    "gopher_too_many_end_ellipsis",
                )
            if p["max_non_alpha_words_ratio"]:
                d.reject(n_words == 0, "no_words")
                d.reject(
                    s["alpha_words_ratio"] < p["max_non_alpha_words_ratio"],
                    "gopher_below_alpha_threshold",
                )
            if p["min_stop_words"]:
                d.reject(s["stop_words"] < p["min_stop_words"], "gopher_enough_stop_words")
        return d.out, s


@functools.cache
def _ends_with_re(stop_chars: tuple[str, ...]) -> str:
    return "(?:" + "|".join(re2_literal(s) for s in stop_chars) + ")$"


class FineWebQuality(_DatatroveFilter):
    """datatrove's ``FineWebQualityFilter`` (FineWeb line filters: terminal punctuation share,
    short lines, duplicated line characters, newlines per word) with per-language thresholds.

    Score columns (float32; computed for every row the filter sees, null only for undefined
    ratios, e.g. no non-blank line): ``fineweb_line_punct_ratio`` (non-blank lines ending with
    terminal punctuation), ``fineweb_short_line_ratio`` (non-blank lines of at most
    ``short_line_length`` characters: the language's setting), ``fineweb_char_dup_ratio``
    (characters of duplicate lines over the characters other than newlines),
    ``fineweb_list_ratio`` (newlines per word).
    """

    name = "fineweb_quality"
    score_columns: ClassVar[dict[str, str]] = {
        "fineweb_line_punct_ratio": "line_punct_ratio",
        "fineweb_short_line_ratio": "short_line_ratio",
        "fineweb_char_dup_ratio": "char_dup_ratio",
        "fineweb_list_ratio": "list_ratio",
    }

    def _factory(self):
        from datatrove.pipeline.filters import FineWebQualityFilter

        return FineWebQualityFilter

    @staticmethod
    def signals(text: pa.Array, p: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``n_lines`` (non-blank), ``line_punct_ratio``, ``short_line_ratio``,
        ``char_dup_ratio``, ``n_words``, ``list_ratio`` (newlines per word)."""
        from datatrove.utils.text import TERMINAL_PUNCTUATION

        text = as_text_array(text)
        n = len(text)
        raw = Lists.from_list_array(split_lines_keep_empty(text), n)
        blank = _np(pc.equal(pc.utf8_trim_whitespace(raw.values), "")).astype(bool)
        lines = Lists(raw.values.filter(pa.array(~blank)), raw.doc[~blank], n)
        stop_chars = p.get("stop_chars")
        stop_chars = tuple(TERMINAL_PUNCTUATION) if stop_chars is None else tuple(stop_chars)
        if stop_chars and len(lines.values):
            ends = _np(pc.match_substring_regex(lines.values, _ends_with_re(stop_chars)))
            punct = lines.per_doc_sum(ends.astype(bool))
        else:
            punct = np.zeros(n, np.int64)
        short = lines.per_doc_sum(lines.char_len <= p["short_line_length"])
        _, dup_chars = dup_elements(lines)
        newlines = _np(pc.count_substring(text, "\n")).astype(np.int64)
        nchars = _np(pc.utf8_length(text)).astype(np.int64)
        # str.split() word count (Arrow splits an empty text into one empty word)
        trimmed = pc.utf8_trim_whitespace(text)
        n_words = np.where(
            _np(pc.equal(trimmed, "")).astype(bool),
            0,
            _np(pc.list_value_length(pc.utf8_split_whitespace(trimmed))).astype(np.int64),
        )
        return {
            "n_lines": lines.counts,
            "line_punct_ratio": _ratio(punct, lines.counts),
            "short_line_ratio": _ratio(short, lines.counts),
            "char_dup_ratio": _ratio(dup_chars, nchars - newlines),
            "n_words": n_words,
            "list_ratio": _ratio(newlines, n_words),
        }

    def _decide_fast(self, text, p):
        s = self.signals(text, p)
        d = _Decisions(len(text))
        with np.errstate(invalid="ignore"):
            d.reject(s["n_lines"] == 0, "empty")
            r = s["line_punct_ratio"]
            low = r < p["line_punct_thr"]
            if p["line_punct_exclude_zero"]:
                low &= r != 0
            d.reject(low, "line_punct_ratio")
            d.reject(s["short_line_ratio"] > p["short_line_thr"], "short_line_ratio")
            d.reject(s["char_dup_ratio"] > p["char_duplicates_ratio"], "char_dup_ratio")
            d.reject(s["n_words"] == 0, "no_words")  # ZeroDivisionError in datatrove
            d.reject(s["list_ratio"] > p["new_line_ratio"], "list_ratio")
        return d.out, s


# --------------------------------------------------------------------------------------
# Korean

#: gambling / adult / illegal-ad vocabulary common in Korean web spam
DEFAULT_SPAM_TERMS = [
    "카지노",
    "바카라",
    "토토사이트",
    "사설토토",
    "먹튀",
    "슬롯머신",
    "홀덤",
    "파워볼",
    "릴게임",
    "꽁머니",
    "스포츠토토",
    "배팅",
    "베팅",
    "조건만남",
    "출장안마",
    "출장마사지",
    "오피스텔 ?안마",
    "야동",
    "성인방송",
    "무료 ?성인",
    "섹스",
    "비아그라",
    "시알리스",
    "대출 ?문의",
    "작업대출",
]

#: lines that are news bylines or copyright boilerplate (RE2, one line each)
BOILERPLATE_PATTERNS = [
    r"무단\s*전재",
    r"재배포\s*금지",
    r"무단\s*복제",
    r"저작권자\s*[ⓒ©(]",
    r"(?i)copyrights?\s*(ⓒ|©|\(c\))",
    r"^\s*[ⓒ©]\s*\S+",
    r"[가-힣]{2,4}\s*(기자|특파원|객원기자)\s*=?\s*[\w.+-]+@[\w.-]+",
    r"^\s*\[?[가-힣]{2,4}\s*(기자|특파원)\]?\s*$",
    r"^\s*(<|\[)\s*(저작권자|ⓒ)",
    r"기사\s*제보",
    r"뉴스\s*제보",
]


class KoreanFilter(Filter):
    """Korean-specific signals, applied to rows whose ``lang`` is in ``languages``:

    * ``hangul_share < min_hangul_share`` -> ``ko_low_hangul``;
    * ``jamo_ratio`` (characters in runs of 3+ bare jamo -- ㅋㅋㅋ, ㅎㅎㅎ, ㅠㅠㅠ -- over all
      characters) ``> max_jamo_ratio`` -> ``ko_repeated_jamo``;
    * ``spam_terms`` (matches of the gambling/adult term list) ``>= max_spam_terms`` ->
      ``ko_spam_terms``.

    ``jamo_ratio`` and ``spam_terms`` are added as score columns for every row.
    """

    name = "korean"

    def __init__(
        self,
        languages: list[str] | None = None,
        min_hangul_share: float = 0.3,
        max_jamo_ratio: float = 0.05,
        max_spam_terms: int = 3,
        spam_terms: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.languages = list(languages or ["ko"])
        self.min_hangul_share = min_hangul_share
        self.max_jamo_ratio = max_jamo_ratio
        self.max_spam_terms = max_spam_terms
        terms = DEFAULT_SPAM_TERMS if spam_terms is None else spam_terms
        self.spam_re = "|".join(f"(?:{t})" for t in terms) if terms else None

    def decide(self, table):
        text = table["text"]
        n_chars = pc.max_element_wise(pc.utf8_length(text), 1)
        without_jamo = pc.replace_substring_regex(text, "[\u3131-\u318e]{3,}", "")
        jamo_chars = pc.subtract(pc.utf8_length(text), pc.utf8_length(without_jamo))
        jamo_ratio = pc.cast(pc.divide(pc.cast(jamo_chars, pa.float64()), n_chars), pa.float32())
        if self.spam_re:
            spam = pc.cast(pc.count_substring_regex(text, self.spam_re), pa.int32())
        else:
            spam = pa.array([0] * table.num_rows, pa.int32())
        is_ko = pc.is_in(pc.fill_null(table["lang"], "und"), value_set=pa.array(self.languages))
        reasons = pa.nulls(table.num_rows, pa.string())
        if "hangul_share" in table.column_names:
            low = pc.less(pc.fill_null(table["hangul_share"], 0.0), self.min_hangul_share)
            reasons = _where(pc.and_(is_ko, low), "ko_low_hangul", reasons)
        reasons = _where(
            pc.and_(is_ko, pc.greater(jamo_ratio, self.max_jamo_ratio)), "ko_repeated_jamo", reasons
        )
        if self.max_spam_terms:
            many = pc.greater_equal(spam, self.max_spam_terms)
            reasons = _where(pc.and_(is_ko, many), "ko_spam_terms", reasons)
        return reasons, {"jamo_ratio": jamo_ratio, "spam_terms": spam}


class KoreanBoilerplate(Filter):
    """Removes boilerplate lines (bylines, copyright, "무단전재 및 재배포 금지") from rows in
    ``languages``; rejects a row (``ko_boilerplate``) when the removed lines were more than
    ``max_removed_ratio`` of its characters. Adds ``boilerplate_lines``; counter
    ``lines_removed``/``bytes_removed``."""

    name = "korean_boilerplate"

    def __init__(
        self,
        languages: list[str] | None = None,
        patterns: list[str] | None = None,
        max_removed_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.languages = list(languages or ["ko"])
        pats = BOILERPLATE_PATTERNS if patterns is None else patterns
        # a whole line (and its newline) containing any pattern; (?m): ^ $ at line ends
        # one line only: \s would cross newlines, and ^ is implied by the line anchor
        alts = "|".join("(?:" + p.replace("^", "").replace(r"\s", r"[ \t]") + ")" for p in pats)
        self.line_re = "(?m)^[^\n]*(?:" + alts + ")[^\n]*(?:\n|$)"
        self.max_removed_ratio = max_removed_ratio

    def decide(self, table):
        text = table["text"]
        is_ko = pc.is_in(pc.fill_null(table["lang"], "und"), value_set=pa.array(self.languages))
        n_lines = pc.count_substring_regex(text, self.line_re)
        hit = pc.and_(is_ko, pc.greater(n_lines, 0))
        n_lines = pc.if_else(is_ko, n_lines, 0)
        if not pc.any(hit).as_py():
            return pa.nulls(table.num_rows, pa.string()), {
                "boilerplate_lines": pc.cast(n_lines, pa.int32())
            }
        cleaned = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, self.line_re, ""))
        new_text = pc.if_else(hit, cleaned, text)
        old_len = pc.binary_length(text)
        new_len = pc.binary_length(new_text)
        removed = pc.subtract(old_len, new_len)
        self.stats.count("lines_removed", pc.sum(n_lines).as_py() or 0)
        self.stats.count("bytes_removed", pc.sum(removed).as_py() or 0)
        ratio = pc.divide(pc.cast(removed, pa.float64()), pc.max_element_wise(old_len, 1))
        reasons = _where(
            pc.greater(ratio, self.max_removed_ratio),
            "ko_boilerplate",
            pa.nulls(table.num_rows, pa.string()),
        )
        # rejected rows keep their original text (what was read), kept rows the cleaned one
        keep_text = pc.if_else(pc.is_null(reasons), new_text, text)
        return reasons, {
            "text": keep_text,
            "n_bytes": pc.cast(pc.binary_length(keep_text), pa.int64()),
            "boilerplate_lines": pc.cast(n_lines, pa.int32()),
        }

"""Quality filters with per-language thresholds.

* :class:`LengthFilter` -- empty, too short, too long (bytes);
* :class:`LanguageFilter` -- allowed languages and a minimum language score per language;
* :class:`GopherQuality`, :class:`GopherRepetition`, :class:`FineWebQuality` -- datatrove's own
  filters (``datatrove.pipeline.filters``), reused as they are, one instance per language with
  that language's thresholds, and a whitespace word splitter (:class:`SpaceWordTokenizer`)
  instead of datatrove's spaCy/Kiwi tokenizers: Korean words are space-separated eojeol (no
  morphological analysis on the hot path: Kiwi runs at ~0.06 MB/s/core here), and spaCy is not
  a dependency;
* :class:`KoreanFilter` -- Hangul share, repeated jamo ("ㅋㅋㅋㅋ"), gambling/adult spam terms;
* :class:`KoreanBoilerplate` -- removes news bylines and copyright lines ("무단전재 및 재배포
  금지", "홍길동 기자 hong@...", "Copyright ⓒ ...") and rejects documents that were mostly
  boilerplate.

Per-language parameters come as ``{"default": {...}, "ko": {...}, "zh": {"enabled": false}}``
(:class:`PerLanguage`): a language's entry overrides the default's keys.

The Korean and length filters are vectorised (``pyarrow.compute``). The datatrove filters are
per-document Python (that is datatrove's code); they share one word split per document through
datatrove's own ``split_into_words`` cache. See ``bench/bench_pipeline.py`` for their speed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.steps import Filter

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


class _DatatroveFilter(Filter):
    """Runs a datatrove ``BaseFilter`` subclass per document, one instance per language."""

    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.params = PerLanguage(params, **self.defaults)
        self._filters: dict[str, Any] = {}

    @abstractmethod
    def _factory(self):
        """The datatrove filter class to instantiate per language."""

    def _filter_for(self, lang: str):
        if lang not in self._filters:
            p = self.params.for_lang(lang)
            if p is None:
                self._filters[lang] = None
            else:
                p = {
                    k: (tuple(tuple(x) for x in v) if k.endswith("n_grams") else v)
                    for k, v in p.items()
                }
                self._filters[lang] = self._factory()(language=SpaceWordTokenizer(), **p)
        return self._filters[lang]

    def decide(self, table):
        from datatrove.data import Document as DTDocument

        texts = table["text"].to_pylist()
        langs = pc.fill_null(table["lang"], "und").to_pylist()
        out: list[str | None] = []
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            f = self._filter_for(lang)
            if f is None:
                out.append(None)
                continue
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
        return _reasons(out), {}


class GopherQuality(_DatatroveFilter):
    """datatrove's ``GopherQualityFilter`` (word counts and lengths, symbols, bullets,
    ellipses, alphabetic words, stop words) with per-language thresholds."""

    name = "gopher_quality"

    def _factory(self):
        from datatrove.pipeline.filters import GopherQualityFilter

        return GopherQualityFilter


class GopherRepetition(_DatatroveFilter):
    """datatrove's ``GopherRepetitionFilter`` (duplicate lines/paragraphs, top n-grams,
    duplicated n-grams) with per-language thresholds."""

    name = "gopher_repetition"

    def _factory(self):
        from datatrove.pipeline.filters import GopherRepetitionFilter

        return GopherRepetitionFilter


class FineWebQuality(_DatatroveFilter):
    """datatrove's ``FineWebQualityFilter`` (FineWeb line filters: terminal punctuation share,
    short lines, duplicated line characters, newlines per word) with per-language thresholds."""

    name = "fineweb_quality"

    def _factory(self):
        from datatrove.pipeline.filters import FineWebQualityFilter

        return FineWebQualityFilter


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

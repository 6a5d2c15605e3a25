"""Offline language identification (py3langid) plus a Hangul-share script signal.

Why py3langid: its model (langid.py's 97-language naive Bayes over byte n-grams) ships inside
the pip package (4.6 MB wheel, BSD), loads in 0.6 s and needs only numpy. Measured on
``../shared/corpus`` (first 2,000 characters of up to 400 documents per language, one core):

==========  ====  ====  ====  ====  ====  =====  =====  ====  =========  =======
library      ko    en    ja    zh    de    fr     es     ru    MB/s/core  load
==========  ====  ====  ====  ====  ====  =====  =====  ====  =========  =======
py3langid   1.00  1.00  1.00  1.00  1.00  0.993  0.777  1.00  3.33       0.6 s
lingua 2.1  1.00  1.00  1.00  1.00  1.00  0.980  0.877  1.00  0.55       19 s
==========  ====  ====  ====  ====  ====  =====  =====  ====  =========  =======

(the "wrong" es/fr answers of both are mostly untranslated English help pages: both libraries
call them English with probability > 0.99). lingua is 6x slower on Latin-script text, takes
19 s and ~1 GB to load its models in every worker and weighs 96 MB; fastText models
(GlotLID, lid.176) cannot be downloaded here.

The Hangul share (Hangul syllables and jamo among all letters) is a vectorised RE2 count; the
Korean filters use it (``hangul_share``).
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.steps import Modifier, add_or_replace

__all__ = ["LanguageID", "hangul_share", "load_identifier"]

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


def hangul_share(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Share of Hangul (syllables and jamo) among the letters of each text (0 without letters)."""
    hangul = pc.count_substring_regex(text, r"\p{Hangul}")
    letters = pc.count_substring_regex(text, r"\pL")
    share = pc.divide(pc.cast(hangul, pa.float64()), pc.max_element_wise(letters, 1))
    return pc.cast(share, pa.float32())


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
        share = hangul_share(text)
        head = pc.utf8_slice_codeunits(text, 0, self.max_chars).to_pylist()
        n_letters = pc.count_substring_regex(text, r"\pL").to_pylist()
        preset = table["lang"].to_pylist() if "lang" in table.column_names else [None] * len(head)
        shares = share.to_pylist()
        langs: list[str] = []
        scores: list[float] = []
        for h, n, pre, s in zip(head, n_letters, preset, shares, strict=True):
            if pre is not None:
                langs.append(pre)
                scores.append(1.0)
                continue
            if n < self.min_chars:
                langs.append("und")
                scores.append(0.0)
                continue
            lang, score = ident.classify(h)
            if self.hangul_override is not None and s >= self.hangul_override and lang != "ko":
                self.stats.count("hangul_override")
                lang, score = "ko", s
            langs.append(lang)
            scores.append(float(score))
        table = add_or_replace(table, "lang", pa.array(langs, pa.string()))
        table = add_or_replace(table, "lang_score", pa.array(scores, pa.float32()))
        return add_or_replace(table, "hangul_share", share)

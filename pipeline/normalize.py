"""Text normalisation: Unicode NFC, explicit full-width -> ASCII map, control characters,
whitespace, optional mojibake repair.

NFC only, never NFKC: NFKC rewrites Hangul compatibility jamo (``ㅋ`` U+314B becomes the
conjoining ``ᄏ`` U+110F), circled numbers, ``㈜`` and friends, which changes Korean text.
Full-width forms are mapped by an explicit table instead (U+FF01..U+FF5E -> U+0021..U+007E,
the ideographic space U+3000 -> space); half-width katakana and Hangul half-width forms are
left alone.

Everything except the full-width map and the mojibake repair is a vectorised
``pyarrow.compute`` call over the whole batch (RE2 regexes in C++); the full-width map runs
``str.translate`` only on the rows that contain a full-width character.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.steps import Modifier, add_or_replace, recompute_n_bytes

__all__ = ["FULLWIDTH_MAP", "Normalize", "fix_mojibake", "normalize_text"]

#: U+FF01..U+FF5E -> ASCII, U+3000 (ideographic space) -> space
FULLWIDTH_MAP = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULLWIDTH_RE = "[\uff01-\uff5e\u3000]"

# C0 controls except \t \n \r, DEL, C1 controls, zero-width and BOM, bidi marks/embeddings,
# soft hyphen, the object replacement character; U+FFFD (from invalid UTF-8) is kept on purpose
_CONTROL_RE = (
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ufffc]"
)
# Unicode spaces (no-break, en/em..., narrow, math) -> plain space
_SPACES_RE = "[\u00a0\u1680\u2000-\u200a\u202f\u205f]"

# mojibake: UTF-8 bytes decoded as cp1252/latin-1 ("Ã©", "í•œêµ­")
_MOJIBAKE_HINT = re.compile(
    "[ÂÃÅÆÇÐÑÒÓâêëìíîïð][\x80-\xbf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]"
)


def fix_mojibake(text: str) -> str:
    """Undo UTF-8 text that was decoded as cp1252 (or latin-1), when that is unambiguous.

    The text is re-encoded as cp1252/latin-1 and decoded as UTF-8; the repair is kept only
    if it decodes cleanly and leaves fewer mojibake signatures than before.
    """
    if not _MOJIBAKE_HINT.search(text):
        return text
    before = len(_MOJIBAKE_HINT.findall(text))
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if len(_MOJIBAKE_HINT.findall(fixed)) < before:
            return fixed
    return text


def _fullwidth(arr: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, int]:
    has = pc.match_substring_regex(arr, _FULLWIDTH_RE)
    n = int(pc.sum(pc.cast(has, pa.int64())).as_py() or 0)
    if not n:
        return arr, 0
    texts = arr.to_pylist()
    flags = has.to_pylist()
    out = [t.translate(FULLWIDTH_MAP) if f else t for t, f in zip(texts, flags, strict=True)]
    return pa.array(out, pa.string()), n


class Normalize(Modifier):
    """NFC, full-width -> ASCII, control characters, whitespace (each switchable).

    Whitespace: ``\\r\\n``/``\\r`` -> ``\\n``; Unicode spaces -> space; runs of spaces/tabs ->
    one space (leading indentation kept); spaces at line ends dropped; 3+ newlines -> 2; the text is stripped.
    Counters: ``docs_changed`` (rows whose text changed), ``fullwidth_docs``,
    ``mojibake_fixed``.
    """

    name = "normalize"

    def __init__(
        self,
        nfc: bool = True,
        fullwidth: bool = True,
        control: bool = True,
        whitespace: bool = True,
        mojibake: bool = False,
    ) -> None:
        super().__init__()
        self.nfc, self.fullwidth, self.control = nfc, fullwidth, control
        self.whitespace, self.mojibake = whitespace, mojibake

    def modify(self, table: pa.Table) -> pa.Table:
        orig = table["text"]
        text = orig
        if self.mojibake:
            texts = text.to_pylist()
            fixed = [fix_mojibake(t) for t in texts]
            self.stats.count(
                "mojibake_fixed", sum(a != b for a, b in zip(texts, fixed, strict=True))
            )
            text = pa.array(fixed, pa.string())
        if self.nfc:
            text = pc.utf8_normalize(text, form="NFC")
        if self.fullwidth:
            text, n = _fullwidth(text)
            self.stats.count("fullwidth_docs", n)
        if self.control:
            text = pc.replace_substring_regex(text, _CONTROL_RE, "")
        if self.whitespace:
            text = pc.replace_substring_regex(text, "\r\n?", "\n")
            text = pc.replace_substring_regex(text, _SPACES_RE, " ")
            text = pc.replace_substring_regex(text, "[\f\v]", " ")
            # runs inside a line -> one space; leading indentation (code, lists) is kept
            text = pc.replace_substring_regex(text, "([^\\s])[ \t]{2,}", "\\1 ")
            text = pc.replace_substring_regex(text, "[ \t]+\n", "\n")
            text = pc.replace_substring_regex(text, "\n{3,}", "\n\n")
            text = pc.utf8_trim_whitespace(text)
        changed = pc.sum(pc.cast(pc.not_equal(orig, text), pa.int64())).as_py() or 0
        self.stats.count("docs_changed", changed)
        table = add_or_replace(table, "text", text)
        return recompute_n_bytes(table)


def normalize_text(text: str, **kwargs: bool) -> str:
    """Normalise one string with :class:`Normalize` (convenience for tests and scripts)."""
    t = pa.table({"text": [text], "n_bytes": [0]})
    kept, _ = Normalize(**kwargs)(t)
    return kept["text"][0].as_py()

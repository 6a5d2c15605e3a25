"""Streaming document readers.

``iter_documents(url)`` yields :class:`Document` objects from one file, read through
``fsspec`` (local paths, ``file://``, ``memory://`` and any other fsspec URL), without ever
holding a whole file in memory. Supported formats, chosen by file extension:

* ``.jsonl`` / ``.json`` -- JSON lines: one JSON object a line, the text in ``text_field``.
  The document id is the record's ``id`` field when it is a string or an integer, otherwise
  ``"{url}#{line_number}"`` (line numbers start at 1). Blank lines are skipped.
* ``.txt`` -- plain text, one document per *paragraph*: a maximal run of non-blank lines
  (a blank line is empty or whitespace-only). ``\\r\\n`` is normalised to ``\\n`` and the
  paragraph's final newline is dropped. A paragraph never exceeds ``MAX_TEXT_DOC_BYTES``
  (1 MiB) of input: a longer one is cut at a line boundary (a single line longer than that
  at a UTF-8 character boundary) and continues in the next document. Ids are
  ``"{url}#{k}"`` with ``k`` the paragraph index (from 0).
* ``.parquet`` -- read row group by row group, in record batches inside each group (only
  the ``text_field`` column and, when present, ``id``). The id is the ``id`` value, otherwise
  ``"{url}#{row}"`` (``row`` counts every row of the file, read or not).

The text formats may be compressed: ``.gz``, ``.bz2``, ``.xz`` (through fsspec's compression
support) or ``.zst`` (decompressed here with ``zstandard``, frame by frame, so that files made
of several frames are read completely and a truncated last frame is detected; fsspec's own
zstd reader stops silently in both cases).

Bad input never stops a read and is never dropped silently. Everything is counted, per file
and reason, in a :class:`ReadErrors` collector; ``ReadErrors.warnings()`` turns the counts
into readable lines that name the files:

* invalid UTF-8 is decoded with U+FFFD replacement; the replaced *bytes* are counted
  (``invalid_utf8``); lone surrogates coming from JSON ``\\uD800``-style escapes are replaced
  too (``lone_surrogate``);
* a JSON line that does not parse, or is not an object, is skipped (``bad_json``, the
  first few kept with their line numbers);
* a record without the text field (``missing_text``) or whose text is not a string
  (``non_string_text``) is skipped;
* empty documents are yielded (callers decide) and counted (``empty``);
* a text file (``.txt``/``.jsonl``, compressed or not) whose first block of *decompressed*
  bytes looks binary (see :func:`looks_binary`) yields nothing and records ``binary``;
* a truncated ``.gz``/``.zst``/... file yields every document before the cut and records
  ``truncated``; undecodable compressed data records ``corrupt``; a Parquet file whose footer
  cannot be read records ``corrupt``; a Parquet row group that cannot be read records
  ``bad_row_group`` (counted in rows lost; the other row groups are read); a file that cannot
  be opened records ``unreadable``; a file that yields no document at all without any other
  problem records ``no_documents``.

When no collector is passed, problems are logged as warnings (``logging``) at the end of
each file instead.
"""

from __future__ import annotations

import bz2
import codecs
import json
import logging
import lzma
import posixpath
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import fsspec

__all__ = [
    "BAD_JSON",
    "BAD_ROW_GROUP",
    "BINARY",
    "COMPRESSIONS",
    "CORRUPT",
    "EMPTY",
    "FORMATS",
    "INVALID_UTF8",
    "LONE_SURROGATE",
    "MAX_TEXT_DOC_BYTES",
    "MISSING_TEXT",
    "NON_STRING_TEXT",
    "NO_DOCUMENTS",
    "TRUNCATED",
    "UNREADABLE",
    "Document",
    "Expanded",
    "InputFile",
    "ReadErrors",
    "decode_utf8",
    "detect_format",
    "expand_inputs",
    "expand_paths",
    "is_supported",
    "iter_documents",
    "looks_binary",
    "strip_known_extensions",
    "utf8_len",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Formats

#: format extensions (the part before an optional compression extension)
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt", ".parquet": "parquet"}
#: compression extensions allowed after a text format, mapped to our codec names
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}

#: largest input (bytes) for one ``.txt`` document
MAX_TEXT_DOC_BYTES = 1 << 20
_CHUNK = 1 << 18  # bytes read at a time (decompressed)
_ZSTD_IN_CHUNK = 1 << 12  # compressed bytes fed to zstd at a time (bounds output per call)
_PARQUET_BATCH = 1024


def _split_ext(name: str) -> tuple[str, str | None, str | None]:
    """``name`` -> (stem, format extension, compression extension), lower-cased extensions."""
    base = posixpath.basename(name.rstrip("/"))
    lower = base.lower()
    comp = None
    for ext in COMPRESSIONS:
        if lower.endswith(ext):
            comp = ext
            base, lower = base[: -len(ext)], lower[: -len(ext)]
            break
    for ext in FORMATS:
        if lower.endswith(ext) and len(lower) > len(ext):
            if ext == ".parquet" and comp is not None:
                return base, None, comp
            return base[: -len(ext)], ext, comp
    return base, None, comp


def detect_format(url: str) -> tuple[str, str | None]:
    """Return ``(format, compression)`` for ``url``: format is ``jsonl``, ``txt`` or
    ``parquet``; compression is ``gzip``, ``bz2``, ``xz``, ``zstd`` or ``None``.

    Raises ``ValueError`` for an unsupported extension.
    """
    _, fmt, comp = _split_ext(url)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(
            f"unsupported file type: {url!r} (known: {known}, text formats optionally "
            f"followed by {', '.join(COMPRESSIONS)})"
        )
    return FORMATS[fmt], (COMPRESSIONS[comp] if comp else None)


def is_supported(url: str) -> bool:
    """Whether :func:`iter_documents` can read ``url`` (judged by its extension)."""
    return _split_ext(url)[1] is not None


def strip_known_extensions(name: str) -> str:
    """``"dir/en.jsonl.gz"`` -> ``"en"``: the base name without format/compression extensions."""
    stem = posixpath.basename(name.rstrip("/"))
    while True:
        new, fmt, comp = _split_ext(stem)
        if fmt is None and comp is None:
            return stem
        if new == stem or not new:
            return stem
        stem = new


# --------------------------------------------------------------------------------------
# Error collector

INVALID_UTF8 = "invalid_utf8"
LONE_SURROGATE = "lone_surrogate"
BAD_JSON = "bad_json"
MISSING_TEXT = "missing_text"
NON_STRING_TEXT = "non_string_text"
EMPTY = "empty"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
UNREADABLE = "unreadable"
NO_DOCUMENTS = "no_documents"
BINARY = "binary"
BAD_ROW_GROUP = "bad_row_group"

#: reason -> description of what the count measures
_LABELS = {
    INVALID_UTF8: "invalid UTF-8 byte(s) replaced with U+FFFD",
    LONE_SURROGATE: "lone surrogate(s) replaced with U+FFFD",
    BAD_JSON: "malformed JSON line(s) skipped",
    MISSING_TEXT: "record(s) without a text field skipped",
    NON_STRING_TEXT: "record(s) whose text is not a string skipped",
    EMPTY: "empty document(s)",
    TRUNCATED: "truncated: documents after the cut are missing",
    CORRUPT: "corrupt: reading stopped",
    UNREADABLE: "unreadable: nothing read",
    NO_DOCUMENTS: "file holds no documents",
    BINARY: "binary content (not UTF-8 text): nothing read",
    BAD_ROW_GROUP: "row(s) lost in unreadable Parquet row group(s)",
}
#: reasons about a whole file (a count of 1 per file)
FILE_REASONS = frozenset({TRUNCATED, CORRUPT, UNREADABLE, NO_DOCUMENTS, BINARY})
#: reasons that mean some or all of a file's documents could not be read
_LOSS_REASONS = (TRUNCATED, CORRUPT, UNREADABLE, BINARY, BAD_ROW_GROUP)


class ReadErrors:
    """Counts reading problems per file and reason and keeps the first few details.

    ``count`` is in the unit of the reason: bytes for ``invalid_utf8``, lines or records for
    the per-record reasons, rows lost for ``bad_row_group``, 1 for the whole-file reasons
    (``truncated``, ``corrupt``, ``unreadable``, ``binary``, ``no_documents``). Collectors can
    be merged (e.g. from parallel tasks) and pickled.
    """

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples
        self._counts: dict[str, dict[str, int]] = {}
        self._examples: dict[str, dict[str, list[str]]] = {}
        self._events: dict[str, dict[str, int]] = {}  # number of add() calls

    def add(self, url: str, reason: str, detail: str | None = None, count: int = 1) -> None:
        """Record ``count`` occurrences of ``reason`` in ``url`` (``detail`` kept if among
        the first ``max_examples``)."""
        if count <= 0:
            return
        per_file = self._counts.setdefault(url, {})
        per_file[reason] = per_file.get(reason, 0) + count
        events = self._events.setdefault(url, {})
        events[reason] = events.get(reason, 0) + 1
        if detail is not None:
            ex = self._examples.setdefault(url, {}).setdefault(reason, [])
            if len(ex) < self.max_examples:
                ex.append(detail)

    def count(self, reason: str | None = None, url: str | None = None) -> int:
        """Total count, optionally restricted to one reason and/or one file."""
        files = [url] if url is not None else list(self._counts)
        total = 0
        for f in files:
            per_file = self._counts.get(f, {})
            if reason is None:
                total += sum(per_file.values())
            else:
                total += per_file.get(reason, 0)
        return total

    def by_file(self) -> dict[str, dict[str, int]]:
        """``{url: {reason: count}}`` (a copy)."""
        return {f: dict(r) for f, r in self._counts.items()}

    def examples(self, url: str, reason: str) -> list[str]:
        """The first details recorded for ``url`` and ``reason``."""
        return list(self._examples.get(url, {}).get(reason, []))

    def files(self, reason: str | None = None) -> list[str]:
        """Files with at least one problem (of ``reason`` when given), in first-seen order."""
        return [f for f, r in self._counts.items() if (reason in r if reason else r)]

    @property
    def has_file_errors(self) -> bool:
        """Whether some file was truncated, corrupt, unreadable or binary, or lost a Parquet
        row group: documents of it could not be read."""
        return any(r in _LOSS_REASONS for per in self._counts.values() for r in per)

    def merge(self, other: ReadErrors) -> None:
        """Add ``other``'s counts and examples into this collector."""
        for url, per_file in other._counts.items():
            for reason, n in per_file.items():
                ex = other._examples.get(url, {}).get(reason, [])
                self.add(url, reason, None, n)
                events = self._events[url]
                events[reason] += other._events.get(url, {}).get(reason, 1) - 1
                mine = self._examples.setdefault(url, {}).setdefault(reason, [])
                for d in ex:
                    if len(mine) >= self.max_examples:
                        break
                    mine.append(d)

    def warnings(self, url: str | None = None) -> list[str]:
        """One readable line per file and reason, e.g.
        ``"data/x.jsonl: 2 malformed JSON line(s) skipped (line 3: ...; line 9: ...)"``."""
        lines = []
        files = [url] if url is not None else list(self._counts)
        for f in files:
            for reason, n in self._counts.get(f, {}).items():
                label = _LABELS.get(reason, reason)
                head = f"{f}: {label}" if reason in FILE_REASONS else f"{f}: {n} {label}"
                ex = self._examples.get(f, {}).get(reason, [])
                if ex:
                    n_events = self._events.get(f, {}).get(reason, 0)
                    more = " ..." if n_events > len(ex) else ""
                    head += f" ({'; '.join(ex)}{more})"
                lines.append(head)
        return lines

    def __bool__(self) -> bool:
        return bool(self._counts)

    def __repr__(self) -> str:
        return f"ReadErrors({self.by_file()!r})"


# --------------------------------------------------------------------------------------
# Decoding

_tls = threading.local()
_REPLACE_COUNT = "mixtrace.replace_count"


def _replace_and_count(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _tls.replaced = getattr(_tls, "replaced", 0) + (exc.end - exc.start)
    return "\ufffd", exc.end


codecs.register_error(_REPLACE_COUNT, _replace_and_count)


def decode_utf8(data: bytes) -> tuple[str, int]:
    """Decode ``data`` as UTF-8, replacing invalid bytes with U+FFFD.

    Returns ``(text, number of bytes replaced)``.
    """
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        pass
    _tls.replaced = 0
    text = data.decode("utf-8", _REPLACE_COUNT)
    return text, _tls.replaced


_SURROGATES = re.compile("[\ud800-\udfff]")


def utf8_len(text: str) -> int:
    """UTF-8 length of ``text`` in bytes (``text`` must not contain lone surrogates)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _clean_len(text: str) -> tuple[str, int, int]:
    """``(text with lone surrogates replaced, UTF-8 length, number replaced)``."""
    if text.isascii():
        return text, len(text), 0
    try:
        return text, len(text.encode("utf-8")), 0
    except UnicodeEncodeError:
        fixed, n = _SURROGATES.subn("\ufffd", text)
        return fixed, len(fixed.encode("utf-8")), n


# --------------------------------------------------------------------------------------
# Documents


@dataclass(frozen=True, slots=True)
class Document:
    """One document: ``n_bytes`` is the UTF-8 length of ``text``; ``source`` the file URL."""

    id: str
    text: str
    source: str
    n_bytes: int


class _ReadFailure:
    """Set by the chunk readers when the underlying stream failed (instead of raising)."""

    __slots__ = ("detail", "reason")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.detail: str | None = None

    def set(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail


def _zstd_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard

        return (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - zstandard is a dependency
        return ()


_DECOMPRESS_ERRORS = (OSError, ValueError, zlib.error, lzma.LZMAError, *_zstd_errors())


def _describe(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"


class _Decompressor:
    """Incremental decompression of one gzip member / bz2, xz stream / zstd frame.

    ``step(data)`` returns ``(output, unconsumed input, stream ended)``; the output of one
    call is bounded (at most ``_CHUNK`` bytes for gzip/bz2/xz, the zstd output of at most
    ``_ZSTD_IN_CHUNK`` input bytes) so that highly compressed data never inflates in one go.
    """

    def __init__(self, codec: str) -> None:
        self.codec = codec
        if codec == "gzip":
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif codec == "bz2":
            self._d = bz2.BZ2Decompressor()
        elif codec == "xz":
            self._d = lzma.LZMADecompressor()
        else:
            import zstandard

            self._d = zstandard.ZstdDecompressor().decompressobj()

    @property
    def wants_input(self) -> bool:
        """False while bz2/xz still hold input they have not turned into output."""
        return self.codec not in ("bz2", "xz") or self._d.needs_input

    def step(self, data: bytes) -> tuple[bytes, bytes, bool]:
        d = self._d
        if self.codec == "zstd":
            head, tail = data[:_ZSTD_IN_CHUNK], data[_ZSTD_IN_CHUNK:]
            out = d.decompress(head)
            if d.eof:
                return out, d.unused_data + tail, True
            return out, tail, False
        out = d.decompress(data, _CHUNK)
        if d.eof:
            return out, d.unused_data, True
        return out, (d.unconsumed_tail if self.codec == "gzip" else b""), False


def _decompressed_chunks(raw, codec: str, failure: _ReadFailure) -> Iterator[bytes]:
    """Decompress ``raw`` (members/frames/streams one after another), yielding bounded
    chunks. Sets ``failure`` instead of raising: ``truncated`` when the input ends inside
    a stream, ``corrupt`` when the data cannot be decoded."""
    dec: _Decompressor | None = None
    buf = b""
    at_eof = False
    n_streams = 0
    while True:
        if not buf and not at_eof and (dec is None or dec.wants_input):
            try:
                buf = raw.read(_CHUNK)
            except OSError as exc:
                failure.set(CORRUPT, f"read error: {_describe(exc)}")
                return
            at_eof = not buf
        if dec is None:
            if codec == "gzip":
                buf = buf.lstrip(b"\x00")  # zero padding after a member (as gzip allows)
            if not buf:
                if at_eof:
                    return
                continue
            dec = _Decompressor(codec)
            n_streams += 1
        try:
            out, buf, ended = dec.step(buf)
        except _DECOMPRESS_ERRORS as exc:
            where = f"stream {n_streams}: " if n_streams > 1 else ""
            failure.set(CORRUPT, f"{codec}: {where}{_describe(exc)}")
            return
        if out:
            yield out
        if ended:
            dec = None
        elif at_eof and not buf and not out:
            failure.set(TRUNCATED, f"{codec} data ends in the middle of a stream")
            return


def _plain_chunks(fh, failure: _ReadFailure) -> Iterator[bytes]:
    while True:
        try:
            data = fh.read(_CHUNK)
        except OSError as exc:
            failure.set(CORRUPT, f"read error: {_describe(exc)}")
            return
        if not data:
            return
        yield data


def _utf8_cut(buf: bytes | bytearray, limit: int) -> int:
    """Largest cut position <= ``limit`` that does not split a UTF-8 sequence (>= 1)."""
    cut = limit
    while cut > max(limit - 3, 1) and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    if (buf[cut] & 0xC0) == 0x80:  # not valid UTF-8 there anyway: cut at the limit
        return limit
    return cut


#: decompressed bytes at the start of a text file on which binary content is detected
_SNIFF_BYTES = 8192
#: C0 control bytes that text does not use, and DEL (tab, LF, VT, FF, CR and ESC -- the
#: colour codes of terminal logs -- are text)
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
#: share of invalid-UTF-8 plus control bytes above which a block is binary. Why 30 %: UTF-8
#: text with stray bad bytes is far below 1 %, and text in a Western single-byte encoding
#: (Latin-1/cp1252 accents) a few percent -- both stay text, their bad bytes replaced and
#: counted as ``invalid_utf8``. Random, compressed or encrypted data is ~48 % invalid UTF-8
#: plus ~11 % control bytes (~59 %), and image/archive/executable formats hold NULs anyway.
#: 30 % leaves a wide margin on both sides. Text in a non-UTF-8 CJK or Cyrillic encoding
#: (EUC-KR, Shift-JIS, cp1251) is mostly invalid UTF-8 and lands above: it is reported as not
#: text rather than turned into documents made of U+FFFD.
_BINARY_SHARE = 0.30
#: complete lines this long before the first NUL byte make a file text with a damaged part
#: (binary formats -- PNG, ELF, zip, Parquet, gzip read raw -- hold a NUL in their header)
_TEXT_BEFORE_NUL = 64


def looks_binary(block: bytes, final: bool = True) -> str | None:
    """Why ``block`` -- the first bytes of a (decompressed) text file -- is binary data, or
    None when it is text.

    Binary: a NUL byte before ``_TEXT_BEFORE_NUL`` bytes of complete lines (text files
    practically never hold one, JSON does not allow it unescaped; binary formats have one in
    their first bytes: the rule of git and grep, relaxed so that a text file whose tail was
    zero-filled by a crash keeps its lines -- the NUL lines are then bad records), or more than
    30 % of the bytes (before the first NUL) invalid UTF-8 or control characters (see
    ``_BINARY_SHARE``). With ``final=False`` the block is a prefix of a longer stream: a UTF-8
    sequence cut by its end does not count as invalid.
    """
    if not block:
        return None
    nul = block.find(b"\x00")
    if nul >= 0:
        lines_end = block.rfind(b"\n", 0, nul) + 1
        if lines_end < _TEXT_BEFORE_NUL:
            return f"NUL byte at offset {nul}"
        block, final = block[:lines_end], True  # judge the lines before it
    n_ctrl = len(block) - len(block.translate(None, _CONTROL_BYTES))
    _tls.replaced = 0
    codecs.getincrementaldecoder("utf-8")(_REPLACE_COUNT).decode(block, final)
    n_bad = _tls.replaced
    share = (n_ctrl + n_bad) / len(block)
    if share > _BINARY_SHARE:
        return (
            f"{share:.0%} of the first {len(block)} bytes are invalid UTF-8 ({n_bad}) or "
            f"control bytes ({n_ctrl}): binary data, or text in another encoding"
        )
    return None


def _sniffed(chunks: Iterator[bytes], url: str, coll: ReadErrors) -> Iterator[bytes]:
    """``chunks`` unchanged, unless their first ``_SNIFF_BYTES`` look binary: then nothing,
    and ``binary`` is recorded for ``url``."""
    head: list[bytes] = []
    size = 0
    ended = True
    for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size >= _SNIFF_BYTES:
            ended = False
            break
    block = b"".join(head)
    why = looks_binary(block[:_SNIFF_BYTES], final=ended)
    if why is not None:
        coll.add(url, BINARY, why)
        return
    yield from head
    yield from chunks


def _iter_lines(chunks: Iterable[bytes], max_len: int | None = None) -> Iterator[bytes]:
    """Split a byte stream into lines (each keeps its ``\\n``; the last one may lack it).

    With ``max_len``, longer lines come out in pieces of at most ``max_len`` bytes, cut at
    UTF-8 character boundaries; only the final piece ends with ``\\n``.
    """
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            while max_len is not None and nl + 1 - start > max_len:
                cut = start + _utf8_cut(buf[start:], max_len)
                yield bytes(buf[start:cut])
                start = cut
            yield bytes(buf[start : nl + 1])
            start = nl + 1
        del buf[:start]
        while max_len is not None and len(buf) > max_len:
            cut = _utf8_cut(buf, max_len)
            yield bytes(buf[:cut])
            del buf[:cut]
    if buf:
        yield bytes(buf)


def iter_documents(
    url: str,
    *,
    text_field: str = "text",
    errors: ReadErrors | None = None,
    id_field: str = "id",
) -> Iterator[Document]:
    """Stream the documents of one file (see the module docstring for formats and errors).

    Raises ``ValueError`` at once for an unsupported extension; every other problem is
    recorded in ``errors`` (or logged when ``errors`` is None) and never raised.
    """
    fmt, compression = detect_format(url)
    return _iter_documents(url, fmt, compression, text_field, id_field, errors)


def _iter_documents(
    url: str,
    fmt: str,
    compression: str | None,
    text_field: str,
    id_field: str,
    errors: ReadErrors | None,
) -> Iterator[Document]:
    own = errors is None
    coll = ReadErrors() if errors is None else errors
    before_file_errors = {r: coll.count(r, url) for r in (*_LOSS_REASONS, NO_DOCUMENTS)}
    n_docs = 0
    try:
        if fmt == "parquet":
            gen = _read_parquet(url, text_field, id_field, coll)
        else:
            gen = _read_text_format(url, fmt, compression, text_field, id_field, coll)
        for doc in gen:
            n_docs += 1
            if doc.n_bytes == 0:
                coll.add(url, EMPTY, f"{doc.id}")
            yield doc
        if n_docs == 0 and all(
            coll.count(r, url) == before_file_errors[r] for r in before_file_errors
        ):
            coll.add(url, NO_DOCUMENTS)
    finally:
        if own:
            for line in coll.warnings(url):
                logger.warning("%s", line)


def _open_failed(url: str, exc: BaseException, coll: ReadErrors) -> None:
    coll.add(url, UNREADABLE, _describe(exc))


def _read_text_format(
    url: str,
    fmt: str,
    compression: str | None,
    text_field: str,
    id_field: str,
    coll: ReadErrors,
) -> Iterator[Document]:
    failure = _ReadFailure()
    try:
        fh = fsspec.open(url, "rb").open()
    except OSError as exc:
        _open_failed(url, exc, coll)
        return
    try:
        if compression is None:
            chunks = _plain_chunks(fh, failure)
        else:
            chunks = _decompressed_chunks(fh, compression, failure)
        chunks = _sniffed(chunks, url, coll)
        if fmt == "txt":
            yield from _txt_documents(url, _iter_lines(chunks, MAX_TEXT_DOC_BYTES), coll)
        else:
            yield from _jsonl_documents(
                url, _iter_lines(chunks), text_field, id_field, coll, failure
            )
    finally:
        fh.close()
    if failure.reason is not None:
        coll.add(url, failure.reason, failure.detail)


def _txt_documents(url: str, lines: Iterator[bytes], coll: ReadErrors) -> Iterator[Document]:
    para: list[bytes] = []
    size = 0
    k = 0

    def flush() -> Document:
        raw = b"".join(para)
        text, bad = decode_utf8(raw)
        if bad:
            coll.add(url, INVALID_UTF8, f"paragraph {k}", bad)
        if text.endswith("\n"):
            text = text[:-1]
        return Document(f"{url}#{k}", text, url, utf8_len(text))

    for raw in lines:
        if not raw.strip():
            if para:
                yield flush()
                k += 1
                para, size = [], 0
            continue
        if raw.endswith(b"\r\n"):
            raw = raw[:-2] + b"\n"
        if para and size + len(raw) > MAX_TEXT_DOC_BYTES:
            yield flush()
            k += 1
            para, size = [], 0
        para.append(raw)
        size += len(raw)
    if para:
        yield flush()


def _record_id(value: object, fallback: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fallback


def _jsonl_documents(
    url: str,
    lines: Iterator[bytes],
    text_field: str,
    id_field: str,
    coll: ReadErrors,
    failure: _ReadFailure,
) -> Iterator[Document]:
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        if failure.reason is not None and not raw.endswith(b"\n"):
            # the fragment left by a truncated/corrupt stream: keep it only if it is whole
            try:
                json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):
                failure.detail = f"{failure.detail}; incomplete line {lineno} dropped"
                continue
        line, bad = decode_utf8(raw)
        if bad:
            coll.add(url, INVALID_UTF8, f"line {lineno}", bad)
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            coll.add(url, BAD_JSON, f"line {lineno}: {exc}")
            continue
        if not isinstance(obj, dict):
            coll.add(url, BAD_JSON, f"line {lineno}: not a JSON object ({type(obj).__name__})")
            continue
        if text_field not in obj or obj[text_field] is None:
            what = "null" if text_field in obj else "missing"
            coll.add(url, MISSING_TEXT, f"line {lineno}: {text_field!r} {what}")
            continue
        text = obj[text_field]
        if not isinstance(text, str):
            coll.add(
                url,
                NON_STRING_TEXT,
                f"line {lineno}: {text_field!r} is {type(text).__name__}",
            )
            continue
        text, n_bytes, n_sur = _clean_len(text)
        if n_sur:
            coll.add(url, LONE_SURROGATE, f"line {lineno}", n_sur)
        yield Document(_record_id(obj.get(id_field), f"{url}#{lineno}"), text, url, n_bytes)


def _read_parquet(url: str, text_field: str, id_field: str, coll: ReadErrors) -> Iterator[Document]:
    """Row group by row group (batch-wise inside a group), so that a damaged row group costs
    its own rows only: it is recorded as ``bad_row_group`` (its index and row count from the
    footer, the rows lost counted) and the next group is read. An unreadable footer makes the
    whole file ``corrupt``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    errors = (pa.ArrowException, OSError, ValueError, EOFError)
    try:
        fh = fsspec.open(url, "rb").open()
    except OSError as exc:
        _open_failed(url, exc, coll)
        return
    try:
        try:
            # pages written with a CRC are verified: damage inside their data is caught too
            pf = pq.ParquetFile(fh, page_checksum_verification=True)
            names = pf.schema_arrow.names
            meta = pf.metadata
            group_rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        except errors as exc:
            coll.add(url, CORRUPT, f"not a readable Parquet file: {exc}")
            return
        if text_field not in names:
            coll.add(
                url,
                MISSING_TEXT,
                f"no {text_field!r} column (columns: {', '.join(names)})",
                max(sum(group_rows), 1),
            )
            return
        columns = [text_field]
        if id_field in names and id_field != text_field:
            columns.append(id_field)
        first = 0  # the group's first row in the file
        for g, n_rows in enumerate(group_rows):
            row = first
            try:
                for batch in pf.iter_batches(
                    batch_size=_PARQUET_BATCH, row_groups=[g], columns=columns
                ):
                    texts = batch.column(0).to_pylist()
                    ids = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
                    for text, rid in zip(texts, ids, strict=True):
                        doc = _parquet_doc(url, row, text, rid, text_field, coll)
                        row += 1
                        if doc is not None:
                            yield doc
            except errors as exc:
                problem = " ".join(str(exc).split()) or type(exc).__name__
            else:
                if row - first >= n_rows:
                    first += n_rows
                    continue
                problem = f"only {row - first} rows read"
            lost = first + n_rows - row
            coll.add(
                url,
                BAD_ROW_GROUP,
                f"row group {g} of {len(group_rows)} ({n_rows} rows from row {first}; "
                f"{lost} lost from row {row}): {problem}",
                max(lost, 1),  # an error after the group's last row still shows
            )
            first += n_rows
    finally:
        fh.close()


def _parquet_doc(
    url: str, row: int, text: object, rid: object, text_field: str, coll: ReadErrors
) -> Document | None:
    if text is None:
        coll.add(url, MISSING_TEXT, f"row {row}: {text_field!r} null")
        return None
    if isinstance(text, bytes | bytearray):
        text, bad = decode_utf8(bytes(text))
        if bad:
            coll.add(url, INVALID_UTF8, f"row {row}", bad)
    if not isinstance(text, str):
        coll.add(url, NON_STRING_TEXT, f"row {row}: {text_field!r} is {type(text).__name__}")
        return None
    text, n_bytes, n_sur = _clean_len(text)
    if n_sur:
        coll.add(url, LONE_SURROGATE, f"row {row}", n_sur)
    return Document(_record_id(rid, f"{url}#{row}"), text, url, n_bytes)


# --------------------------------------------------------------------------------------
# Path expansion


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _has_protocol(spec: str) -> bool:
    return "://" in spec or "::" in spec


def _hidden_below(root: str, path: str) -> bool:
    rel = path[len(root) :].lstrip("/") if path.startswith(root) else posixpath.basename(path)
    return any(part.startswith(".") for part in rel.split("/") if part)


#: a finished pipeline output folder holds these two (written by :mod:`pipeline.executor`)
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"


def _manifest_files(fs, folder: str) -> list[str]:
    """The kept-document files that a finished pipeline output's manifest lists."""
    path = f"{folder}/{MANIFEST}"
    try:
        entries = json.loads(fs.cat_file(path))["files"]
        return [f"{folder}/{e['path']}" for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable pipeline manifest ({exc!r})") from exc


def _walk(fs, root: str) -> tuple[list[str], list[str]]:
    """Supported files below ``root``, and the unsupported ones (both sorted). A finished
    pipeline output below it (a folder with ``_SUCCESS`` and ``manifest.json``) gives the data
    files its manifest lists: not its report, manifest or rejected documents (which are not
    counted as unsupported either, nor are hidden entries)."""
    root = root.rstrip("/")
    found = fs.find(root, detail=True)
    outputs = sorted(
        d
        for d in {posixpath.dirname(p) for p in found if posixpath.basename(p) == SUCCESS}
        if f"{d}/{MANIFEST}" in found
    )
    files, unsupported = [], []
    for p, info in found.items():
        if (
            info.get("type") == "directory"
            or _hidden_below(root, p)
            or any(p.startswith(f"{d}/") for d in outputs)
        ):
            continue
        (files if is_supported(p) else unsupported).append(p)
    for d in outputs:
        files += _manifest_files(fs, d)
    return sorted(files), sorted(unsupported)


def _glob_base(path: str) -> str:
    """The folder a glob is relative to: its leading components without wildcards."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if _has_magic(part):
            return "/".join(parts[:i]) or "/"
    return posixpath.dirname(path)


def _relative(root: str, path: str) -> str | None:
    root = root.rstrip("/")
    if root and path.startswith(f"{root}/"):
        return path[len(root) + 1 :]
    if not root:
        return path.lstrip("/")
    return None


def _url_of(fs, pattern: str, path: str) -> str:
    """``path`` (as ``fs`` has it) in the form the user gave ``pattern``: with the protocol
    when the pattern had one."""
    return fs.unstrip_protocol(path) if _has_protocol(pattern) else path


def _unsupported_reason(pattern: str) -> str:
    return (
        f"unsupported file type (found by {pattern!r}; known: {', '.join(sorted(FORMATS))}, "
        f"text formats optionally followed by {', '.join(COMPRESSIONS)})"
    )


class InputFile(NamedTuple):
    """One readable file found by :func:`expand_inputs`.

    ``root`` is the folder it was found under (the folder given, or the fixed leading part of
    the glob that matched it) and ``rel`` its path relative to ``root``; both are None for a
    file named explicitly. ``rel`` does not depend on where the data is mounted or on the URL
    protocol, so it can key the file's documents across machines.
    """

    url: str
    root: str | None
    rel: str | None


class Expanded(NamedTuple):
    """What :func:`expand_inputs` found: readable files, and the files it passed over
    (``{"path": url, "reason": why}``: unsupported types, named or found in folders/globs)."""

    files: list[InputFile]
    skipped: list[dict[str, str]]


def expand_inputs(spec: str | list[str]) -> Expanded:
    """Like :func:`expand_paths`, but keeping where each file was found and listing every file
    it passed over instead of failing on it.

    Every unsupported file -- named explicitly, found in a folder or matched by a glob -- goes
    into ``skipped`` with its reason (hidden entries and the report/manifest/rejected files of
    a finished pipeline output are not data and are not listed). Raises
    ``FileNotFoundError`` naming the pattern when a pattern matches no file at all (supported
    or not).
    """
    return _expand(spec, strict=False)


def expand_paths(
    spec: str | list[str], *, skipped: list[dict[str, str]] | None = None
) -> list[str]:
    """Expand files, folders and globs into a sorted, de-duplicated list of readable files.

    * a file is kept as is (``ValueError`` when its type is not supported);
    * a folder gives every supported file below it (recursively, hidden entries skipped); a
      finished ``mixtrace pipeline`` output gives the kept-document files of its manifest;
    * a glob (``*``, ``?``, ``[...]``, ``**``) gives its matching supported files (and the
      supported files inside matching folders).

    Each pattern's files are sorted; patterns keep their order; duplicates are dropped.
    Local paths come back as absolute paths, URLs with their protocol. Raises
    ``FileNotFoundError`` naming the pattern when a pattern matches nothing.

    With a ``skipped`` list, unsupported files are appended to it (``{"path", "reason"}``, as
    :func:`expand_inputs` lists them) instead of raising ``ValueError``, and a pattern that
    matches only unsupported files is not an error.
    """
    if skipped is None:
        return [f.url for f in _expand(spec, strict=True).files]
    found = _expand(spec, strict=False)
    skipped.extend(found.skipped)
    return [f.url for f in found.files]


def _expand(spec: str | list[str], strict: bool) -> Expanded:
    patterns = [spec] if isinstance(spec, str) else list(spec)
    if not patterns:
        raise FileNotFoundError("no paths given")
    out: list[InputFile] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    seen_skipped: set[str] = set()
    for pattern in patterns:
        fs, path = fsspec.core.url_to_fs(pattern)
        files: list[tuple[str, str | None]] = []  # (path, root)
        unsupported: list[str] = []
        if _has_magic(path):
            base = _glob_base(path)
            matches = fs.glob(path, detail=True)
            for p in sorted(matches):
                if _hidden_below(base, p):  # as a folder walk: .git/, .cache/ are not inputs
                    continue
                if matches[p].get("type") == "directory":
                    found, bad = _walk(fs, p)
                    files.extend((f, base) for f in found)
                    unsupported.extend(bad)
                elif is_supported(p):
                    files.append((p, base))
                else:
                    unsupported.append(p)
        elif fs.isdir(path):
            found, unsupported = _walk(fs, path)
            files = [(f, path.rstrip("/")) for f in found]
        elif fs.exists(path):
            if is_supported(path):
                files = [(path, None)]
            else:
                try:
                    detect_format(path)
                except ValueError as exc:  # always: the message details the known types
                    if strict:
                        raise
                    u = _url_of(fs, pattern, path)
                    if u not in seen_skipped:
                        seen_skipped.add(u)
                        skipped.append({"path": u, "reason": str(exc)})
                continue
        else:
            raise FileNotFoundError(f"no such file or folder: {pattern!r}")
        if not files and (strict or not unsupported):
            raise FileNotFoundError(
                f"{pattern!r} matches no supported files "
                f"({', '.join(sorted(FORMATS))}, optionally {', '.join(COMPRESSIONS)})"
            )
        for p, root in files:
            u = _url_of(fs, pattern, p)
            if u not in seen:
                seen.add(u)
                rel = _relative(root, p) if root is not None else None
                out.append(
                    InputFile(u, _url_of(fs, pattern, root) if rel is not None else None, rel)
                )
        for p in unsupported:
            u = _url_of(fs, pattern, p)
            if u not in seen_skipped:
                seen_skipped.add(u)
                skipped.append({"path": u, "reason": _unsupported_reason(pattern)})
    return Expanded(out, skipped)

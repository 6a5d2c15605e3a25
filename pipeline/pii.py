"""PII scrubbing with validated matches and typed placeholders.

Types (in the order they are applied):

* ``email`` -- ``local@domain.tld`` (ASCII);
* ``rrn`` -- Korean resident registration numbers ``YYMMDD-GNNNNNN``: the date must exist (the
  century comes from the gender digit G: 1, 2, 5, 6 -> 1900s; 3, 4, 7, 8 -> 2000s) and, when
  ``rrn_checksum`` is on (default), the last digit must match the checksum (weights
  2,3,4,5,6,7,8,9,2,3,4,5; check = (11 - sum mod 11) mod 10). Numbers issued since October 2020
  have random last digits: turn ``rrn_checksum`` off to catch those (date check only);
* ``card`` -- 13 to 19 digits (in groups of 4, or contiguous) that pass the Luhn check;
* ``account`` -- bank-account-like numbers (``123-456-789012``, or 10-14 digits) only right after
  a context word (계좌, 입금, 예금주, bank names, "account", "IBAN"...); the word is kept;
* ``phone`` -- Korean numbers: mobile 010/011/016-019, Seoul 02, regional 031-064, 070, with
  ``+82`` forms; separators required unless the whole run of digits has a phone's length;
* ``ip`` -- IPv4 and IPv6 addresses that are *public* (``ipaddress``'s ``is_global``): private,
  loopback, link-local, documentation and reserved ranges are left alone.

Each validated match becomes its type's placeholder (``<EMAIL>``, ``<RRN>``... configurable);
``PIIScrubber`` counts replacements per type (``counters['pii_<type>']``) and adds a
``pii_count`` column. Only rows that contain a digit or ``@`` are scanned (a vectorised
pre-check); the scan is a compiled regex per type whose callback runs only on candidates.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.steps import Modifier, add_or_replace, recompute_n_bytes

__all__ = [
    "DEFAULT_PLACEHOLDERS",
    "PII_TYPES",
    "PIIScrubber",
    "is_public_ip",
    "luhn_ok",
    "rrn_ok",
    "scrub",
]

PII_TYPES = ("email", "rrn", "card", "account", "phone", "ip")
DEFAULT_PLACEHOLDERS = {
    "email": "<EMAIL>",
    "rrn": "<RRN>",
    "card": "<CARD>",
    "account": "<ACCOUNT>",
    "phone": "<PHONE>",
    "ip": "<IP>",
}

_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def rrn_ok(number: str, checksum: bool = True) -> bool:
    """Whether ``number`` (13 digits, separators ignored) is a plausible Korean resident
    registration number: a real birth date (century from the 7th digit) and, with
    ``checksum``, a correct check digit."""
    d = re.sub(r"\D", "", number)
    if len(d) != 13:
        return False
    g = int(d[6])
    if g in (1, 2, 5, 6):
        year = 1900 + int(d[0:2])
    elif g in (3, 4, 7, 8):
        year = 2000 + int(d[0:2])
    else:
        return False
    month, day = int(d[2:4]), int(d[4:6])
    if not 1 <= month <= 12 or day < 1 or day > _DAYS[month - 1]:
        return False
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return False
    if not checksum:
        return True
    s = sum(int(c) * w for c, w in zip(d[:12], _RRN_WEIGHTS, strict=True))
    return (11 - s % 11) % 10 == int(d[12])


def luhn_ok(number: str) -> bool:
    """Luhn check over the digits of ``number`` (separators ignored; 13-19 digits)."""
    d = re.sub(r"\D", "", number)
    if not 13 <= len(d) <= 19 or len(set(d)) == 1:
        return False
    total = 0
    for i, c in enumerate(reversed(d)):
        n = int(c)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def is_public_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4/IPv6 address in public (globally routable) space."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return bool(addr.is_global) and not addr.is_multicast


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_RRN = re.compile(r"(?<![\d-])(\d{6})\s?[-–]?\s?([1-8]\d{6})(?![\d-])")
_CARD = re.compile(r"(?<![\d-])(?:\d{4}[ -]){3}\d{1,7}(?![\d-])|(?<![\d-])\d{13,19}(?![\d-])")
_ACCOUNT = re.compile(
    r"(계좌\s*번호|계좌|입금\s*계좌|입금|무통장|예금주|[가-힣]{1,6}은행|농협|신협|새마을금고|우체국|"
    r"카카오뱅크|케이뱅크|토스뱅크|(?i:bank\s+account|account\s+(?:no\.?|number)|acct\.?|iban))"
    r"(\s*[:：]?\s*(?:[가-힣A-Za-z()]{1,10}\s*[:：]?\s*)?)"
    r"(\d{2,6}(?:[ -]\d{2,8}){1,4}|\d{10,14})(?![\d-])"
)
_PHONE = re.compile(
    r"(?<![\d-])(?:\+82[ -]?\(?0?\)?[ -]?|\(?0)(?:1[016789]|2|[3-6][1-5]|70)\)?"
    r"(?:[ .-]\d{3,4}[ .-]|\d{3,4})\d{4}(?![\d-])"
)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)(?![\w:])")


def scrub(
    text: str,
    types: Iterable[str] = PII_TYPES,
    placeholders: Mapping[str, str] | None = None,
    rrn_checksum: bool = True,
    counts: dict[str, int] | None = None,
) -> str:
    """Replace the PII of ``types`` in ``text``; adds per-type counts to ``counts``."""
    ph = dict(DEFAULT_PLACEHOLDERS)
    if placeholders:
        ph.update(placeholders)
    counts = counts if counts is not None else {}
    types = set(types)

    def sub(kind: str, pattern: re.Pattern, ok: Callable[[re.Match], str | None], s: str) -> str:
        def repl(m: re.Match) -> str:
            out = ok(m)
            if out is None:
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return out

        return pattern.sub(repl, s)

    if "email" in types and "@" in text:
        text = sub("email", _EMAIL, lambda m: ph["email"], text)
    if "rrn" in types:
        text = sub(
            "rrn",
            _RRN,
            lambda m: ph["rrn"] if rrn_ok(m.group(1) + m.group(2), rrn_checksum) else None,
            text,
        )
    if "card" in types:
        text = sub("card", _CARD, lambda m: ph["card"] if luhn_ok(m.group(0)) else None, text)
    if "account" in types:

        def acct(m: re.Match) -> str | None:
            if _PHONE.fullmatch(m.group(3)):
                return None  # a phone number after "입금 문의": left to the phone pass
            return m.group(1) + m.group(2) + ph["account"]

        text = sub("account", _ACCOUNT, acct, text)
    if "phone" in types:
        text = sub("phone", _PHONE, lambda m: ph["phone"], text)
    if "ip" in types:
        text = sub("ip", _IPV4, lambda m: ph["ip"] if is_public_ip(m.group(0)) else None, text)
        if "::" in text or text.count(":") >= 2:
            text = sub("ip", _IPV6, lambda m: ph["ip"] if is_public_ip(m.group(0)) else None, text)
    return text


class PIIScrubber(Modifier):
    """Scrubs PII (see the module docstring) in every row; adds ``pii_count``."""

    name = "pii"

    def __init__(
        self,
        types: Iterable[str] = PII_TYPES,
        placeholders: Mapping[str, str] | None = None,
        rrn_checksum: bool = True,
    ) -> None:
        super().__init__()
        unknown = set(types) - set(PII_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)} (known: {', '.join(PII_TYPES)})")
        self.types = tuple(t for t in PII_TYPES if t in set(types))
        self.placeholders = dict(placeholders or {})
        self.rrn_checksum = rrn_checksum

    def modify(self, table: pa.Table) -> pa.Table:
        text = table["text"]
        candidate = pc.match_substring_regex(text, r"[0-9@]").to_pylist()
        texts = text.to_pylist()
        out: list[str] = []
        per_doc: list[int] = []
        totals: dict[str, int] = {}
        for t, cand in zip(texts, candidate, strict=True):
            if not cand:
                out.append(t)
                per_doc.append(0)
                continue
            c: dict[str, int] = {}
            out.append(scrub(t, self.types, self.placeholders, self.rrn_checksum, c))
            per_doc.append(sum(c.values()))
            for k, v in c.items():
                totals[k] = totals.get(k, 0) + v
        for k, v in totals.items():
            self.stats.count(f"pii_{k}", v)
        self.stats.count("docs_with_pii", sum(1 for n in per_doc if n))
        table = add_or_replace(table, "text", pa.array(out, pa.string()))
        table = add_or_replace(table, "pii_count", pa.array(per_doc, pa.int32()))
        return recompute_n_bytes(table)

"""Names that come from data (a category, a language label, a file listed in a JSON file)
become single path components, never paths: nothing a user's input says can make mixtrace read
or write outside the folder it was given."""

from __future__ import annotations

import os
import re
import uuid

__all__ = ["UnsafePathError", "check_component", "safe_component", "temp_path"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class UnsafePathError(ValueError):
    """A name that would leave its folder (``..``, ``/``, a drive or an empty name)."""


def safe_component(name: str, *, default: str = "_") -> str:
    """``name`` as one harmless file-name component: characters other than letters, digits,
    ``_ . -`` become ``_``, and a result made only of dots (``.``, ``..``) gets a ``_`` prefix."""
    out = _UNSAFE.sub("_", str(name))[:120] or default
    return f"_{out}" if set(out) <= {"."} else out


def check_component(name: str, *, what: str = "name") -> str:
    """``name`` unchanged if it is already one safe component, else :class:`UnsafePathError`."""
    if not isinstance(name, str) or safe_component(name) != name:
        raise UnsafePathError(
            f"{what} {name!r} is not a plain file name (it could leave its folder)"
        )
    return name


def temp_path(path: str) -> str:
    """A name to write ``path`` under before renaming it into place, unique to this writer.

    Two writers of the same file (a task retried while the first attempt still runs, or the
    workers of a killed run that outlive their driver) each write their own temporary file and
    rename it; the output is deterministic, so whichever rename lands last is the same file. A
    shared ``path + '.tmp'`` would let one writer rename the other's file away mid-write."""
    return f"{path}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"

"""Reading a Ray job's YAML config (any fsspec URL): one mapping, known keys, required keys.

Shared by ``jobs.infer``, ``jobs.bpe`` and ``jobs.experiment``; each passes its own error class
so that the message reaches the user the way the rest of that job reports bad input.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["read_job_config"]


def read_job_config(
    url: str,
    known: Iterable[str],
    *,
    required: Iterable[str] = (),
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """The config at ``url`` as a dict; ``error`` names the file for an unreadable file,
    invalid YAML, a config that is not a mapping, unknown keys or a missing required key."""
    import fsspec
    import yaml

    try:
        with fsspec.open(url, "r", encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{url}: cannot read the config: {e}") from None
    except yaml.YAMLError as e:
        raise error(f"{url}: invalid YAML: {e}") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise error(f"{url}: the config must be a mapping of settings")
    known = set(known)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise error(f"{url}: unknown config key(s) {unknown}; known: {sorted(known)}")
    for key in required:
        if not cfg.get(key):
            raise error(f"{url}: '{key}' is required")
    return cfg

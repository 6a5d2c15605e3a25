"""Pipeline configuration: ``configs/default.yaml`` deep-merged with a run's YAML/dict.

Unknown keys are errors (a typo must not silently fall back to a default). The merged config
is JSON-serialisable; its fingerprint (sha256 of the canonical JSON without ``executor``)
identifies a run's output for resumption.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.steps import Step

__all__ = ["CLEAN_STAGES", "ConfigError", "build_steps", "fingerprint", "load_config"]

DEFAULT_PATH = Path(__file__).with_name("configs") / "default.yaml"

#: order of the per-shard stages (dedup signatures come last)
CLEAN_STAGES = (
    "normalize",
    "langid",
    "length",
    "language",
    "korean_boilerplate",
    "korean",
    "fineweb_quality",
    "gopher_repetition",
    "gopher_quality",
    "pii",
)
# keys whose values are free-form mappings (per-language tables, placeholders)
_FREE = {"fineweb_quality", "gopher_repetition", "gopher_quality", "placeholders", "min_score"}
_INPUT_KEYS = {"path", "text_field", "id_field", "source", "lang"}


class ConfigError(ValueError):
    """A configuration problem (the message names the key)."""


def _defaults() -> dict[str, Any]:
    with open(DEFAULT_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _merge(base: dict[str, Any], over: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{where}.{k}" if where else k
        if k not in out and where.split(".")[-1] not in _FREE:
            raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(out))})")
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in ("inputs",):
            out[k] = _merge(out[k], v, key) if k not in _FREE else {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _normalise_inputs(inputs: Any) -> list[dict[str, Any]]:
    if isinstance(inputs, str | Mapping):
        inputs = [inputs]
    out = []
    for i, item in enumerate(inputs or []):
        spec = {"path": item} if isinstance(item, str) else dict(item)
        unknown = set(spec) - _INPUT_KEYS
        if unknown:
            raise ConfigError(
                f"inputs[{i}]: unknown key(s) {sorted(unknown)} (known: {sorted(_INPUT_KEYS)})"
            )
        if not spec.get("path"):
            raise ConfigError(f"inputs[{i}]: 'path' is required")
        spec.setdefault("text_field", "text")
        spec.setdefault("id_field", "id")
        spec.setdefault("source", None)
        spec.setdefault("lang", None)
        out.append(spec)
    return out


def read_yaml_mapping(url: str, *, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The YAML mapping at ``url`` (a local path or any fsspec URL; an empty file is ``{}``);
    ``error`` names the file for a missing or unreadable file, invalid YAML or a non-mapping.
    (The pipeline's config and the Ray jobs' configs are read with it.)"""
    import fsspec

    try:
        with fsspec.open(url, "r", encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
    except FileNotFoundError:
        raise error(f"config file not found: {url!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read config {url!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"config {url!r} is not valid YAML: {exc}") from None
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise error(f"config {url!r} must be a mapping of settings")
    return cfg


def load_config(
    config: str | Path | Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Defaults <- ``config`` (a YAML file: local path or fsspec URL; or a mapping) <-
    ``overrides`` (top-level keys whose value is not None, e.g. ``inputs=[...]``,
    ``output=...``)."""
    cfg = _defaults()
    if config is not None:
        if isinstance(config, str | Path):
            user = read_yaml_mapping(str(config), error=ConfigError)
        else:
            user = config
        cfg = _merge(cfg, user, "")
    over = {k: v for k, v in overrides.items() if v is not None}
    cfg = _merge(cfg, over, "")
    cfg["inputs"] = _normalise_inputs(cfg.get("inputs"))
    return cfg


def fingerprint(cfg: Mapping[str, Any]) -> str:
    """sha256 of what determines the output (everything but ``executor``)."""
    data = {k: v for k, v in cfg.items() if k != "executor"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _params(stage_cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stage_cfg.items() if k != "enabled"}


def build_steps(cfg: Mapping[str, Any]) -> list[Step]:
    """The enabled per-shard steps, in :data:`CLEAN_STAGES` order, then dedup signatures."""
    from pipeline import dedup, filters, langid, normalize, pii

    makers = {
        "normalize": normalize.Normalize,
        "langid": langid.LanguageID,
        "length": filters.LengthFilter,
        "language": filters.LanguageFilter,
        "korean_boilerplate": filters.KoreanBoilerplate,
        "korean": filters.KoreanFilter,
        "fineweb_quality": lambda **p: filters.FineWebQuality(p),
        "gopher_repetition": lambda **p: filters.GopherRepetition(p),
        "gopher_quality": lambda **p: filters.GopherQuality(p),
        "pii": pii.PIIScrubber,
    }
    stages = cfg["stages"]
    steps: list[Step] = []
    for name in CLEAN_STAGES:
        sc = stages.get(name) or {}
        if not sc.get("enabled", True):
            continue
        try:
            steps.append(makers[name](**_params(sc)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"stages.{name}: {exc}") from exc
    d = stages.get("dedup") or {}
    if d.get("enabled", True) and (d.get("exact", True) or d.get("near", True)):
        steps.append(
            dedup.DedupSignatures(
                n_grams=d["n_grams"], bands=d["bands"], rows=d["rows"], seed=d["seed"]
            )
        )
    return steps

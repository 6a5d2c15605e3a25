"""What the Ray job entrypoints share: reading a job's YAML config (any fsspec URL: one
mapping, known keys, required keys) and connecting to Ray with a log line naming the cluster.

Shared by ``jobs.infer``, ``jobs.bpe``, ``jobs.experiment`` (and ``jobs.pipeline`` for the
connection); each passes its own error class so that the message reaches the user the way the
rest of that job reports bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["connect_ray", "read_job_config"]

logger = logging.getLogger("mixtrace.jobs")


def read_job_config(
    url: str,
    known: Iterable[str],
    *,
    required: Iterable[str] = (),
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """The config at ``url`` as a dict; ``error`` names the file for an unreadable file,
    invalid YAML, a config that is not a mapping, unknown keys or a missing required key."""
    from pipeline.config import read_yaml_mapping

    cfg = read_yaml_mapping(url, error=error)
    known = set(known)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise error(f"{url}: unknown config key(s) {unknown}; known: {sorted(known)}")
    for key in required:
        if not cfg.get(key):
            raise error(f"{url}: '{key}' is required")
    return cfg


def connect_ray(
    address: str | None,
    *,
    error: type[Exception] = RuntimeError,
    **ensure_kwargs: Any,
) -> dict[str, Any]:
    """Connect to the Ray cluster at ``address`` (else ``RAY_ADDRESS``, else a new local one;
    see :func:`forensics.raytools.ensure_ray`, which gets ``ensure_kwargs``), or keep the
    connection this process already has (a warning when ``address`` is then not used), and log
    which cluster it is: its GCS address, node ids and CPUs (also returned as a dict). A
    failure to connect raises ``error``."""
    import ray

    from forensics.raytools import ensure_ray

    if address and ray.is_initialized():  # ensure_ray keeps it: say so, not silently
        logger.warning("Ray is already initialised in this process: address %s not used", address)
    try:
        ensure_ray(address, **ensure_kwargs)
    except Exception as e:  # connection refused, bad address, resources, ...
        where = address or "RAY_ADDRESS or a local cluster"
        raise error(f"cannot start or connect to Ray ({where}): {e}") from e
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    info = {
        "gcs_address": ray.get_runtime_context().gcs_address,
        "nodes": nodes,
        "cpus": ray.cluster_resources().get("CPU", 0),
    }
    logger.info(
        "Ray: cluster at %s, %d node(s) (%s), %g CPU(s)",
        info["gcs_address"],
        len(nodes),
        ", ".join(n[:12] for n in nodes),
        info["cpus"],
    )
    return info

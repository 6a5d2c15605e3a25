"""Small Ray helpers shared by the forensics jobs and the corpus pipeline.

:func:`ensure_ray` connects to a cluster (``address``, else ``RAY_ADDRESS``) or starts a quiet
local one, and does nothing when Ray is already initialised (a test fixture, a notebook, a
``ray job submit`` driver that called it before). Local clusters start without the dashboard
and without forwarding worker logs; usage statistics are off unless the caller set
``RAY_USAGE_STATS_ENABLED`` explicitly.

Worker code: Ray puts the driver's working directory (and script folder) on the workers'
``sys.path``, which covers a local cluster started from the repository or an installed
package. A remote cluster without ``mixtrace`` installed needs the code shipped:
``ensure_ray(address, runtime_env=project_runtime_env())`` (or ``ray job submit
--working-dir .``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["ensure_ray", "project_runtime_env"]

logger = logging.getLogger(__name__)

_PACKAGES = ("forensics", "pipeline", "jobs")


def project_runtime_env() -> dict[str, Any]:
    """A Ray ``runtime_env`` shipping this project's packages to the workers (``py_modules``)."""
    root = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(root / p) for p in _PACKAGES if (root / p).is_dir()]}


def ensure_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    runtime_env: dict[str, Any] | None = None,
    **init_kwargs: Any,
) -> bool:
    """Initialise Ray unless it already is; returns True when this call initialised it.

    ``address`` (else the ``RAY_ADDRESS`` environment variable) selects an existing cluster
    (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); without one a local cluster is
    started with ``include_dashboard=False``, ``log_to_driver=False`` and Ray's own logging at
    ``WARNING`` (override any of them through ``init_kwargs``). ``num_cpus`` and ``object_store_memory`` only apply to a local cluster
    (Ray refuses them when connecting) and are ignored with a log message otherwise.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    addr = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if runtime_env is not None:
        kwargs["runtime_env"] = runtime_env
    if addr:
        if num_cpus is not None or object_store_memory is not None:
            logger.info("connecting to %s: num_cpus/object_store_memory ignored", addr)
        kwargs["address"] = addr
    else:
        kwargs["include_dashboard"] = False
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        if object_store_memory is not None:
            kwargs["object_store_memory"] = object_store_memory
    kwargs.update(init_kwargs)
    logger.info("starting Ray (%s)", f"address={addr}" if addr else "local cluster")
    ray.init(**kwargs)
    return True

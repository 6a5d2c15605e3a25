"""Shared fixtures: one local Ray for the whole session, the shared test material folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` without `python -m`: make the packages importable
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download from a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs, small object store) shared by every test that needs it."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(
            address="local",  # a fresh local cluster, even if `ray start` left one running
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=200 * 1024 * 1024,
            logging_level="WARNING",
        )
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository (corpora and real tokenizers)."""
    path = ROOT.parent / "shared"
    if not path.is_dir():
        pytest.fail(
            f"shared test material not found at {path}: these tests need the project's "
            "shared folder (corpus/, tokenizers/) next to the repository",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def shared_tokenizers(shared_dir) -> Path:
    """``../shared/tokenizers``: the released tokenizers (gpt2, cl100k_base, llama2, mistral)."""
    return shared_dir / "tokenizers"

"""``python -m pipeline.bpe.trainer_child DIR``: run the compiled BPE trainer on the arrays in
``DIR`` (``*.npy`` and ``scalars.json``, written by :func:`pipeline.bpe.trainer._train_in_child`)
and write ``DIR/rows.npy`` (the merges as rows a, b, new id) and ``DIR/stats.npy``.

A process of its own that imports numpy, numba and the trainer only: its peak memory is the
trainer's arrays on top of numba's runtime, whatever the parent holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.bpe.trainer import _ARRAYS, _SCALARS, peak_rss
from pipeline.bpe.trainer_core import _train_arrays


def main(folder: str) -> None:
    d = Path(folder)
    arrays = [np.load(d / f"{name}.npy", allow_pickle=False) for name in _ARRAYS]
    scalars = json.loads((d / "scalars.json").read_text(encoding="utf-8"))
    rows, stats = _train_arrays(*arrays, *(int(scalars[k]) for k in _SCALARS))
    np.save(d / "rows.npy", rows, allow_pickle=False)
    np.save(d / "stats.npy", np.append(stats, peak_rss()), allow_pickle=False)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.bpe.trainer_child DIR")
    main(sys.argv[1])

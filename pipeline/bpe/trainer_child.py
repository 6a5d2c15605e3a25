"""``python -m pipeline.bpe.trainer_child DIR``: run the compiled BPE trainer on the arrays in
``DIR`` (``*.npy`` and ``scalars.json``, written by :func:`pipeline.bpe.trainer._train_in_child`)
and write ``DIR/rows.npy`` (the merges as rows a, b, new id) and ``DIR/stats.npy``.

A process of its own that imports numpy and the trainer only: its peak memory is the
trainer's arrays, whatever the parent holds. The loop is the ahead-of-time build
(:mod:`pipeline.bpe.trainer_aot`, no numba or LLVM in the process) where it can be had, else
numba's JIT (``stats.npy`` ends with the peak resident size and 1 for the build, 0 for the
JIT)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pipeline.bpe import trainer_aot
from pipeline.bpe.trainer import _ARRAYS, _SCALARS, _trainer_args, peak_rss


def main(folder: str) -> None:
    d = Path(folder)
    arrays = [np.load(d / f"{name}.npy", allow_pickle=False) for name in _ARRAYS]
    scalars = json.loads((d / "scalars.json").read_text(encoding="utf-8"))
    args, wide = _trainer_args(*arrays, *(int(scalars[k]) for k in _SCALARS))
    del arrays
    compiled = None
    if not wide:
        compiled, _ = trainer_aot.load()
    if compiled is not None:
        rows, stats = getattr(compiled, trainer_aot.EXPORT)(*args)
    else:
        from pipeline.bpe.trainer_core import _train

        rows, stats = _train(*args)
    np.save(d / "rows.npy", rows, allow_pickle=False)
    np.save(
        d / "stats.npy",
        np.append(stats, [peak_rss(), int(compiled is not None)]),
        allow_pickle=False,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.bpe.trainer_child DIR")
    main(sys.argv[1])

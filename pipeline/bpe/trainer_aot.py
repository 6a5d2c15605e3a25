"""The BPE trainer's loop compiled ahead of time: a plain CPython extension module built from
:mod:`pipeline.bpe.trainer_core` with ``numba.pycc``, which loads without numba or LLVM.

Why: a process that runs numba's JIT — even one loading a cached function — holds LLVM
(``libllvmlite.so``, 68 MB resident) and numba's runtime, 156 MB before the first array
(measured, VmHWM); the same loop as an extension module costs a few MB. The training child
(:mod:`pipeline.bpe.trainer_child`) loads it from a cache folder and builds it there the first
time (~10 s, in a subprocess of its own, so that the child never maps LLVM); where it cannot
be built (no C compiler, numba without ``pycc``) the child runs the JIT loop instead, which
gives the same merges (tested).

The cache: ``$MIXTRACE_CACHE_DIR`` or ``$XDG_CACHE_HOME/mixtrace`` (``~/.cache/mixtrace``),
one module per version of the trainer's source, numba and Python (a digest in its name), so
a stale build is never loaded. A build that failed leaves ``<module>.failed`` (its error) and is
not retried for that version until the file is deleted.

``python -m pipeline.bpe.trainer_aot [DIR]`` builds it (into DIR, or the cache) and prints its
path (the container image does this once).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

#: the one exported function: ``trainer_core._train`` with 32-bit word, posting and pair
#: indices (the ``wide`` case, past 2^31 - 1, stays with the JIT)
EXPORT = "train"
SIGNATURE = (
    "Tuple((int64[:, ::1], int64[::1]))("
    "int32[::1], int32[:, ::1], int32[:, ::1], int64[::1], int64[:, ::1], "  # sym, post, pairs, pcount, heap
    "int64[::1], int64[::1], int64[::1], "  # start, length, wcount
    "uint64[::1], uint64[::1], "  # tok_hash, tok_pow
    "int64, int64, int64, int8[::1], boolean, boolean)"  # n_vocab .. skip_existing
)


def cache_dir() -> Path:
    """Where the built module lives (``$MIXTRACE_CACHE_DIR``, else the user's cache)."""
    explicit = os.environ.get("MIXTRACE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixtrace"


def module_name() -> str:
    """``bpe_train_<digest>``: of the trainer's sources, numba's version and the Python ABI
    (read without importing numba)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        numba_version = version("numba")
    except PackageNotFoundError:
        numba_version = "none"
    h = hashlib.sha256()
    here = Path(__file__).parent
    for part in (
        (here / "trainer_core.py").read_bytes(),
        (here / "trainer.py").read_bytes(),  # the loop's constants (_KEY)
        SIGNATURE.encode(),
        numba_version.encode(),
        (sysconfig.get_config_var("EXT_SUFFIX") or "").encode(),
        sys.version.encode(),
    ):
        h.update(part)
        h.update(b"\0")
    return f"bpe_train_{h.hexdigest()[:16]}"


def module_path(folder: Path | None = None) -> Path:
    return (folder or cache_dir()) / (
        module_name() + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    )


def _import(path: Path) -> ModuleType:
    # the module's name is the file's up to its first dot (its PyInit_ symbol)
    spec = importlib.util.spec_from_file_location(path.name.split(".", 1)[0], path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not an extension module")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(*, build: bool = True, folder: Path | None = None) -> tuple[ModuleType | None, str]:
    """The compiled module and how it was got (``"cached"``, ``"built"``), or ``None`` and why
    not (then use the JIT). ``build``: build it (in a subprocess) when it is not there."""
    path = module_path(folder)
    failed = path.with_suffix(".failed")  # a build that failed is not retried every run
    how = "cached"
    if not path.exists():
        if failed.exists():
            why = failed.read_text(encoding="utf-8", errors="replace")
            return None, f"{why} (delete {failed} to try again)"
        if not build:
            return None, f"{path} is not built"
        root = str(Path(__file__).resolve().parents[2])
        pp = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + pp if pp else "")}
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.bpe.trainer_aot", str(path.parent)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0 or not path.exists():
            why = f"building {path} failed: {proc.stderr.strip()[-1500:]}"
            logger.warning("%s; the BPE trainer runs on numba's JIT instead", why)
            try:
                failed.write_text(why, encoding="utf-8")
            except OSError:
                pass  # an unwritable cache: nothing to remember it in
            return None, why
        how = "built"
    try:
        return _import(path), how
    except ImportError as e:
        logger.warning("%s cannot be loaded (%s); the BPE trainer runs on numba's JIT", path, e)
        return None, f"{path} cannot be loaded: {e}"


def build(folder: Path) -> Path:
    """Compile the module into ``folder`` (imports numba; written under a temporary name and
    renamed, so that concurrent builders never expose a half-written file)."""
    import tempfile

    from numba.pycc import CC

    from . import trainer_core

    folder.mkdir(parents=True, exist_ok=True)
    target = module_path(folder)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        cc = CC(module_name())
        cc.output_dir = tmp
        cc.verbose = False
        cc.export(EXPORT, SIGNATURE)(trainer_core._train.py_func)
        cc.compile()
        built = Path(tmp) / target.name
        os.replace(built, target)
    return target


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit("usage: python -m pipeline.bpe.trainer_aot [DIR]")
    print(build(Path(sys.argv[1]) if len(sys.argv) == 2 else cache_dir()))

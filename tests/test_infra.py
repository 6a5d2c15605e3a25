"""The deployment files in ``infra/`` agree with each other and with the code (no network, docker
or kubectl).

* every YAML parses; Kubernetes objects are the expected kinds and API versions, and every
  RayJob/RayCluster field is a field of KubeRay's ray.io/v1 types;
* KubeRay cluster specs: rayVersion = the installed ray, autoscaling bounds, requests/limits,
  object store below the memory limit and inside ``/dev/shm``, spill directory mounted;
* RayJobs: entrypoint, shutdown + TTL for their own cluster, or a selector naming our RayCluster;
* every ``python -m jobs.X`` (manifests, launcher, Dockerfile, infra/README.md) names a module of
  ``jobs/``, passes that module's own argument parser, and its config exists in the repository
  (``$MIXTRACE_HOME/...`` in the image) and loads with the job's own loader;
* the Dockerfile's base image = the lock's ray = the installed ray, its Python = the lock's =
  within ``requires-python``; one image everywhere, tagged with those versions;
* the lock pins every runtime dependency of pyproject.toml within its range, and is closed under
  the dependencies' own requirements;
* the cluster-launcher YAML passes Ray's own config preparation and schema and matches the
  KubeRay settings; ``.dockerignore`` keeps what the image needs.

``python tests/test_infra.py --lock > infra/requirements.lock`` regenerates the lock from the
installed packages.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata as md
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
DOCKERFILE = INFRA / "Dockerfile"
LOCK = INFRA / "requirements.lock"
LAUNCHER = INFRA / "cluster-launcher.yaml"
K8S_FILES = sorted(INFRA.glob("raycluster*.yaml")) + sorted(INFRA.glob("rayjob-*.yaml"))
ALL_YAML = sorted(INFRA.rglob("*.yaml"))
#: launched besides pyproject's dependencies (the cluster launcher's AWS node provider)
EXTRA_LOCK_ROOTS = ("boto3",)
KNOWN_KINDS = {
    ("ray.io/v1", "RayCluster"),
    ("ray.io/v1", "RayJob"),
    ("v1", "PersistentVolumeClaim"),
}
JOB_CMD = re.compile(r"python3?\s+-m\s+(jobs\.[A-Za-z_]\w*)((?:\s+[^\s;&|<>`\"']+)*)")
_LOCK_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(?P<extras>[^\]]+)\])?==(?P<ver>\S+)$"
)
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


# ---------------------------------------------------------------------------------- readers


def pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def yaml_docs(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in K8S_FILES for d in yaml_docs(p)]


def of_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in k8s_objects() if d.get("kind") == kind]


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """(where, RayCluster spec): the RayClusters' and the RayJobs' own ``rayClusterSpec``."""
    out = [(f"{p.name}:{d['metadata']['name']}", d["spec"]) for p, d in of_kind("RayCluster")]
    out += [
        (f"{p.name}:{d['metadata']['name']}", d["spec"]["rayClusterSpec"])
        for p, d in of_kind("RayJob")
        if "rayClusterSpec" in d["spec"]
    ]
    return out


def groups(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("head", spec["headGroupSpec"])] + [
        (g.get("groupName", "?"), g) for g in spec.get("workerGroupSpecs") or []
    ]


def dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def base_image() -> re.Match[str]:
    froms = [ln.split()[1] for ln in dockerfile_lines() if ln.upper().startswith("FROM ")]
    assert froms, "infra/Dockerfile has no FROM"
    m = re.fullmatch(
        r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>3)(?P<minor>\d+)(?:-(?:cpu|aarch64))*",
        froms[-1],
    )
    assert m, f"final base image {froms[-1]!r} is not rayproject/ray:<x.y.z>-py3NN[-cpu]"
    return m


def image_home() -> str:
    """The project's folder in the image (``ENV MIXTRACE_HOME``, also the WORKDIR)."""
    lines = dockerfile_lines()
    env = [m.group(1) for ln in lines for m in [re.search(r"\bMIXTRACE_HOME=(\S+)", ln)] if m]
    workdir = [ln.split()[1] for ln in lines if ln.upper().startswith("WORKDIR ")]
    assert env, "infra/Dockerfile must set ENV MIXTRACE_HOME (the project's folder)"
    assert workdir and workdir[-1] == env[0], f"WORKDIR {workdir} != MIXTRACE_HOME {env[0]}"
    return env[0].rstrip("/")


def read_lock() -> tuple[dict[str, tuple[str, set[str], str]], str | None]:
    """({canonical name: (name, extras, version)}, python_version header)."""
    pins: dict[str, tuple[str, set[str], str]] = {}
    python = None
    for n, raw in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), 1):
        head = re.match(r"#\s*python_version:\s*(\S+)", raw.strip())
        if head:
            python = head.group(1)
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LOCK_LINE.match(line)
        assert m, f"requirements.lock:{n}: {line!r} is not an exact pin name[extras]==version"
        key = canonicalize_name(m["name"])
        assert key not in pins, f"requirements.lock:{n}: {m['name']} pinned twice"
        extras = {e.strip() for e in (m["extras"] or "").split(",") if e.strip()}
        pins[key] = (m["name"], extras, m["ver"])
    return pins, python


def quantity(value: Any) -> float:
    """A Kubernetes quantity (``"32Gi"``, ``"500m"``, ``8``) or a byte count as a number."""
    s = str(value)
    if s.endswith("m"):
        return float(s[:-1]) / 1000
    for suffix, mult in _UNITS.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    return float(s)


def marker_env(python: str) -> dict[str, str]:
    """Marker environment of the image: Linux x86-64, CPython ``python``."""
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def applies(marker: Marker | None, extras: set[str], env: dict[str, str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def job_commands() -> list[tuple[str, str, list[str]]]:
    """Every ``python -m jobs.X ARGS`` in the deployment files: (where, module, argv)."""
    texts: list[tuple[str, str]] = []
    for p, d in k8s_objects():
        if d.get("kind") == "RayJob":
            texts.append((f"{p.name} entrypoint", str(d["spec"].get("entrypoint", ""))))
    for key, value in yaml_docs(LAUNCHER)[0].items():
        if key.endswith("_commands"):
            texts += [(f"{LAUNCHER.name} {key}", str(c)) for c in value or []]
    texts += [(f"Dockerfile: {ln[:40]}", ln) for ln in dockerfile_lines()]
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", readme, flags=re.M | re.S)  # code only
    texts += [(f"infra/README.md: {ln.strip()[:60]}", ln) for b in blocks for ln in b.splitlines()]
    out = []
    for where, text in texts:
        for m in JOB_CMD.finditer(text):
            out.append((where, m.group(1), shlex.split(m.group(2))))
    return out


def repo_path(path: str) -> Path:
    """A config path of a command, in the repository: ``$MIXTRACE_HOME/x`` (the image's copy of
    the repository) or relative to the repository root (``ray job submit --working-dir .``)."""
    home = image_home()
    if path.startswith(home + "/"):
        return ROOT / path[len(home) + 1 :]
    assert not path.startswith("/") and "://" not in path, (
        f"{path}: configs must ship with the project (under {home}/ or relative)"
    )
    return ROOT / path


class _Parsed(Exception):  # control flow: the parsed arguments, raised out of main()
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.namespace = namespace


def parse_with_job(module: Any, argv: list[str], where: str) -> argparse.Namespace | None:
    """The module's own ``main`` parses ``argv``; stopped right after parsing. None for --help."""
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", capture)
        try:
            module.main(argv)
        except _Parsed as p:
            return p.namespace
        except SystemExit as e:
            if e.code == 0 and ("--help" in argv or "-h" in argv):
                return None
            pytest.fail(f"{where}: {module.__name__} rejects {argv} (exit {e.code})")
    pytest.fail(f"{where}: {module.__name__}.main({argv}) returned without parsing arguments")


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_parses(path):
    docs = yaml_docs(path)
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: expected mappings"


def test_kubernetes_kinds_and_api_versions():
    objs = k8s_objects()
    assert {p.name for p, _ in objs} >= {"raycluster.yaml", "rayjob-pipeline.yaml"}
    for p, d in objs:
        assert (d.get("apiVersion"), d.get("kind")) in KNOWN_KINDS, (
            f"{p.name}: unexpected {d.get('apiVersion')}/{d.get('kind')}"
        )
        assert d.get("metadata", {}).get("name"), f"{p.name}: {d['kind']} without a name"
        assert isinstance(d.get("spec"), dict), f"{p.name}: {d['kind']} without a spec"
    kinds = [d["kind"] for _, d in objs]
    assert "RayCluster" in kinds and "RayJob" in kinds


# Fields of the KubeRay ray.io/v1 types (ray-operator/apis/ray/v1/{rayjob,raycluster}_types.go,
# KubeRay 1.1-1.5): a misspelt field is pruned by the API server without a word.
RAYJOB_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy",
    "deletionStrategy", "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode",
    "entrypointResources", "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend",
}  # fmt: skip
CLUSTER_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion",
    "workerGroupSpecs", "authOptions", "upgradeStrategy",
}  # fmt: skip
HEAD_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
    "rayStartParams", "template", "scaleStrategy", "numOfHosts",
}  # fmt: skip
AUTOSCALER_FIELDS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds",
    "upscalingMode", "env", "envFrom", "volumeMounts", "version",
}  # fmt: skip


def test_kuberay_fields_exist_in_the_crds():
    for p, d in of_kind("RayJob"):
        unknown = set(d["spec"]) - RAYJOB_FIELDS
        assert not unknown, f"{p.name}: not RayJob fields: {unknown}"
    for where, spec in cluster_specs():
        assert not set(spec) - CLUSTER_FIELDS, f"{where}: {set(spec) - CLUSTER_FIELDS}"
        auto = spec.get("autoscalerOptions") or {}
        assert not set(auto) - AUTOSCALER_FIELDS, f"{where}: {set(auto) - AUTOSCALER_FIELDS}"
        assert auto.get("upscalingMode", "Default") in {"Default", "Aggressive", "Conservative"}
        for name, group in groups(spec):
            known, required = (
                (HEAD_FIELDS, {"template", "rayStartParams"})
                if name == "head"
                else (WORKER_FIELDS, {"groupName", "minReplicas", "maxReplicas", "template"})
            )
            assert not set(group) - known, f"{where}/{name}: not fields: {set(group) - known}"
            assert required <= set(group), f"{where}/{name}: missing {required - set(group)}"


def test_ray_cluster_specs():
    ray_version = md.version("ray")
    pvcs = {d["metadata"]["name"] for _, d in of_kind("PersistentVolumeClaim")}
    specs = cluster_specs()
    assert len(specs) >= 2, "expected the RayCluster and the pipeline RayJob's own cluster"
    for where, spec in specs:
        assert str(spec.get("rayVersion")) == ray_version, (
            f"{where}: rayVersion {spec.get('rayVersion')} != installed ray {ray_version}"
        )
        assert spec.get("enableInTreeAutoscaling") is True, f"{where}: autoscaling is off"
        workers = spec.get("workerGroupSpecs") or []
        assert workers, f"{where}: no worker group"
        for w in workers:
            lo, n, hi = (
                w.get("minReplicas"),
                w.get("replicas", w.get("minReplicas")),
                w.get("maxReplicas"),
            )
            assert all(isinstance(x, int) for x in (lo, n, hi)), f"{where}: replicas not integers"
            assert 0 <= lo <= n <= hi and hi > lo, f"{where}: bad bounds min {lo} n {n} max {hi}"
        assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", (
            f"{where}: the head must not take tasks (num-cpus '0')"
        )
        for name, group in groups(spec):
            params = group.get("rayStartParams") or {}
            bad = {k: v for k, v in params.items() if not isinstance(v, str)}
            assert not bad, f"{where}/{name}: rayStartParams must be strings (CRD): {bad}"
            pod = group["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes") or []}
            containers = pod["containers"]
            ray_c = containers[0]  # KubeRay: the first container runs Ray
            for c in containers:
                res = c.get("resources") or {}
                for kind in ("cpu", "memory"):
                    req, lim = res.get("requests", {}).get(kind), res.get("limits", {}).get(kind)
                    assert req is not None and lim is not None, (
                        f"{where}/{name}/{c['name']}: {kind} request and limit required"
                    )
                    assert quantity(req) <= quantity(lim), f"{where}/{name}: {kind} request > limit"
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
                missing = set(mounts.values()) - set(volumes)
                assert not missing, f"{where}/{name}: mounts undefined volumes {missing}"
            for v in volumes.values():
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                assert claim is None or claim in pvcs, f"{where}/{name}: unknown PVC {claim}"
            mem = quantity(ray_c["resources"]["limits"]["memory"])
            cpu = quantity(ray_c["resources"]["limits"]["cpu"])
            store = params.get("object-store-memory")
            assert store, f"{where}/{name}: object-store-memory not set"
            assert quantity(store) <= 0.5 * mem, f"{where}/{name}: object store > half the memory"
            mounts = {m["mountPath"]: m["name"] for m in ray_c.get("volumeMounts") or []}
            shm = volumes.get(mounts.get("/dev/shm", ""), {}).get("emptyDir") or {}
            assert shm.get("medium") == "Memory", (
                f"{where}/{name}: /dev/shm is not a memory emptyDir"
            )
            assert quantity(shm["sizeLimit"]) >= quantity(store), (
                f"{where}/{name}: /dev/shm < store"
            )
            spill = params.get("object-spilling-directory")
            assert spill in mounts, (
                f"{where}/{name}: spill directory {spill} is not a mounted volume"
            )
            if name != "head":  # the documented sizing rule: >= 4 GiB per CPU
                assert mem / cpu >= 4 * 2**30, (
                    f"{where}/{name}: {mem / cpu / 2**30:.1f} GiB per CPU"
                )


def test_rayjobs():
    clusters = {d["metadata"]["name"] for _, d in of_kind("RayCluster")}
    jobs = of_kind("RayJob")
    assert any("jobs.pipeline" in d["spec"].get("entrypoint", "") for _, d in jobs)
    for p, d in jobs:
        spec, where = d["spec"], f"{p.name}:{d['metadata']['name']}"
        assert spec.get("entrypoint"), f"{where}: no entrypoint"
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), (
            f"{where}: needs exactly one of rayClusterSpec / clusterSelector"
        )
        if "rayClusterSpec" in spec:
            assert spec.get("shutdownAfterJobFinishes") is True, (
                f"{where}: cluster is never deleted"
            )
            ttl = spec.get("ttlSecondsAfterFinished")
            assert isinstance(ttl, int) and ttl > 0, f"{where}: ttlSecondsAfterFinished {ttl}"
        else:
            selected = spec["clusterSelector"].get("ray.io/cluster")
            assert selected in clusters, f"{where}: selects RayCluster {selected!r}, not defined"
            assert "shutdownAfterJobFinishes" not in spec, f"{where}: shuts down a shared cluster"


def test_one_image_everywhere_tagged_with_its_versions():
    images = {}
    for p, d in k8s_objects():
        spec = d.get("spec", {})
        pods = []
        if d["kind"] == "RayCluster":
            pods = [g["template"] for _, g in groups(spec)]
        elif d["kind"] == "RayJob":
            if "rayClusterSpec" in spec:
                pods = [g["template"] for _, g in groups(spec["rayClusterSpec"])]
            if "submitterPodTemplate" in spec:
                pods.append(spec["submitterPodTemplate"])
        for pod in pods:
            for c in pod["spec"]["containers"]:
                images.setdefault(c["image"], []).append(f"{p.name}/{c['name']}")
    images.setdefault(yaml_docs(LAUNCHER)[0]["docker"]["image"], []).append(LAUNCHER.name)
    assert len(images) == 1, f"different images: {images}"
    (image,) = images
    m = base_image()
    assert f"ray{m['ray']}" in image and f"py{m['py']}{m['minor']}" in image, (
        f"{image}: the tag must name the Dockerfile's ray {m['ray']} and py{m['py']}{m['minor']}"
    )


def test_base_image_matches_lock_and_installed_ray():
    m = base_image()
    pins, _ = read_lock()
    assert "ray" in pins, "requirements.lock does not pin ray"
    installed = md.version("ray")
    assert Version(m["ray"]) == Version(pins["ray"][2]) == Version(installed), (
        f"Dockerfile ray {m['ray']}, lock ray {pins['ray'][2]}, installed ray {installed}"
    )


def test_python_version_agrees():
    m = base_image()
    image_python = f"{m['py']}.{m['minor']}"
    _, lock_python = read_lock()
    assert lock_python == image_python, (
        f"lock made for Python {lock_python}, image has Python {image_python}"
    )
    requires = pyproject()["project"].get("requires-python", "")
    assert SpecifierSet(requires).contains(f"{image_python}.0"), (
        f"image Python {image_python} outside requires-python {requires!r}"
    )


def test_lock_pins_every_runtime_dependency():
    pins, _ = read_lock()
    deps = pyproject()["project"]["dependencies"]
    assert deps
    for dep in deps:
        req = Requirement(dep)
        key = canonicalize_name(req.name)
        assert key in pins, f"requirements.lock does not pin {req.name} ({dep})"
        _, extras, version = pins[key]
        assert set(req.extras) <= extras, f"lock pins {req.name} without extras {req.extras}"
        assert req.specifier.contains(version, prereleases=True), (
            f"lock pins {req.name}=={version}, outside pyproject's {dep!r}"
        )


def test_lock_is_closed_under_requirements():
    """Each pinned package's requirements (as installed here) are pinned, within range."""
    pins, python = read_lock()
    env = marker_env(python or f"{sys.version_info.major}.{sys.version_info.minor}")
    checked = 0
    for name, extras, version in pins.values():
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        if Version(dist.version) != Version(version):
            continue  # not installed at the pinned version: its metadata would not apply
        checked += 1
        for raw in dist.requires or []:
            req = Requirement(raw)
            if not applies(req.marker, extras, env):
                continue
            dep = canonicalize_name(req.name)
            assert dep in pins, f"{name}=={version} requires {raw!r}: not in the lock"
            assert req.specifier.contains(pins[dep][2], prereleases=True), (
                f"{name}=={version} requires {raw!r}, lock pins {pins[dep][2]}"
            )
            missing = {canonicalize_name(e) for e in req.extras} - {
                canonicalize_name(e) for e in pins[dep][1]
            }
            assert not missing, f"{name} requires {raw!r}: lock pins {dep} without {missing}"
    # ray is pinned at the installed version (test above), so at least it is checked here
    assert checked, "no locked package is installed at its pinned version"


def test_job_commands_name_real_modules_args_and_configs():
    cmds = job_commands()
    modules = {mod for _, mod, _ in cmds}
    assert {"jobs.pipeline", "jobs.bpe", "jobs.infer", "jobs.experiment"} <= modules, modules
    loaders = {
        "jobs.experiment": lambda p: importlib.import_module("jobs.experiment")._config(p),
        "jobs.pipeline": lambda p: importlib.import_module("pipeline.config").load_config(p),
        "jobs.bpe": lambda p: importlib.import_module("jobs.bpe")._load(p),
        "jobs.infer": lambda p: importlib.import_module("jobs.infer").load_config(p),
    }
    for where, mod, argv in cmds:
        source = ROOT / (mod.replace(".", "/") + ".py")
        assert source.is_file(), f"{where}: {mod} does not exist ({source.relative_to(ROOT)})"
        module = importlib.import_module(mod)
        assert callable(getattr(module, "main", None)), f"{where}: {mod} has no main()"
        assert '__name__ == "__main__"' in source.read_text(encoding="utf-8"), (
            f"{where}: {mod} does not run as python -m"
        )
        ns = parse_with_job(module, argv, where)
        if ns is None:  # --help
            continue
        config = getattr(ns, "config", None)
        assert config, f"{where}: no config argument in {argv}"
        path = repo_path(config)
        assert path.is_file(), f"{where}: config {config} -> {path.relative_to(ROOT)} is missing"
        assert mod in loaders, f"{where}: no config loader known for {mod}"
        loaders[mod](str(path))  # raises on unknown keys or missing required ones


def test_cluster_launcher_valid_and_matches_kuberay():
    cfg = yaml_docs(LAUNCHER)[0]
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as e:  # Ray moved its private helpers: structural checks below still run
        pytest.fail(f"cannot import Ray's config validation ({e}); update this test")
    validate_config(prepare_config(copy.deepcopy(cfg)))  # Ray's defaults + ray-schema.json

    assert cfg["provider"]["type"] in {"aws", "gcp", "azure"}
    types = cfg["available_node_types"]
    head_type = cfg["head_node_type"]
    (worker_type,) = [t for t in types if t != head_type]
    (rc,) = [d for _, d in of_kind("RayCluster")]
    k8s = dict(groups(rc["spec"]))
    k8s_worker = rc["spec"]["workerGroupSpecs"][0]

    def flags(commands: list[str]) -> dict[str, str]:
        text = " ".join(str(c) for c in commands)
        assert "ray start" in text
        return dict(re.findall(r"--([a-z-]+)=(\S+)", text))

    head, worker = flags(cfg["head_start_ray_commands"]), flags(cfg["worker_start_ray_commands"])
    assert head.get("num-cpus") == "0" and types[head_type].get("resources", {}).get("CPU") == 0
    for name, fl, group in (("head", head, k8s["head"]), ("worker", worker, k8s_worker)):
        params = group["rayStartParams"]
        assert fl.get("object-store-memory") == params["object-store-memory"], (
            f"launcher {name} object store {fl.get('object-store-memory')} != KubeRay's"
        )
        spill = fl.get("object-spilling-directory")
        assert spill == params["object-spilling-directory"]
        mounts = " ".join(cfg["docker"].get("run_options", []))
        assert f"{spill}:{spill}" in mounts, f"launcher: {spill} is not mounted into the container"
        shm = " ".join(cfg["docker"].get(f"{name}_run_options", []))
        size = re.search(r"--shm-size=(\d+)g", shm)
        assert size and int(size.group(1)) * 2**30 >= int(fl["object-store-memory"]), (
            f"launcher {name}: --shm-size below the object store"
        )
    limits = k8s_worker["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert types[worker_type]["resources"].get("CPU") == quantity(limits["cpu"]), (
        "launcher worker CPUs differ from the KubeRay worker's"
    )
    assert types[worker_type]["max_workers"] == k8s_worker["maxReplicas"]


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line.lstrip("!").strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((negate, re.compile(rx + "(?:/.*)?")))  # a directory excludes its contents
    return rules


def ignored(path: str) -> bool:
    out = False
    for negate, rx in _dockerignore():
        if rx.fullmatch(path):
            out = not negate
    return out


def test_dockerignore_keeps_what_the_image_needs():
    assert ignored(".git") and ignored("tests/test_infra.py"), "context should drop .git, tests"
    needed = {
        "pyproject.toml",
        "jobs/pipeline.py",
        "jobs/cli.py",
        "pipeline/configs/default.yaml",
        "forensics/__init__.py",
        "data/sample/ko.jsonl.gz",
    }
    for ln in dockerfile_lines():
        if ln.upper().startswith(("COPY ", "ADD ")):
            srcs = [a for a in ln.split()[1:-1] if not a.startswith("--")]
            for src in srcs:
                if src != ".":
                    assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
                    needed.add(src)
    for _, _mod, argv in job_commands():
        configs = [a for a in argv if a.endswith((".yaml", ".yml"))]
        needed |= {str(repo_path(c).relative_to(ROOT)) for c in configs}
    for path in sorted(needed):
        assert (ROOT / path).exists(), f"{path} is missing from the repository"
        assert not ignored(path), f".dockerignore drops {path}, which the image needs"


# ---------------------------------------------------------------------------------- lock


def generate_lock() -> str:
    """The lock for the installed packages: pyproject's dependencies (+ EXTRA_LOCK_ROOTS) and
    everything they require, markers evaluated for the image (Linux, this Python)."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = marker_env(python)
    roots = [Requirement(d) for d in pyproject()["project"]["dependencies"]]
    roots += [Requirement(r) for r in EXTRA_LOCK_ROOTS]
    todo = list(roots)
    extras: dict[str, set[str]] = {}
    found: dict[str, tuple[str, str]] = {}
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        want = set(req.extras)
        if key in extras and want <= extras[key]:
            continue
        extras[key] = extras.get(key, set()) | want
        dist = md.distribution(req.name)
        found[key] = (key, dist.version)
        todo += [
            Requirement(r)
            for r in dist.requires or []
            if applies(Requirement(r).marker, extras[key], env)
        ]
    extra_roots = {canonicalize_name(r) for r in EXTRA_LOCK_ROOTS}
    lines = [
        "# mixtrace runtime lock for the cluster image (infra/Dockerfile): exact pins of",
        "# pyproject.toml [project].dependencies and everything they require (markers evaluated for",
        f"# linux / CPython {python}), at the versions installed in the environment the tests run in, plus",
        "# boto3 for the cluster launcher's AWS node provider. Regenerate: see infra/README.md.",
        f"# python_version: {python}",
    ]
    for key in sorted(found):
        name, version = found[key]
        ex = sorted(extras[key])
        spec = f"{name}[{','.join(ex)}]" if ex else name
        note = (
            "  # cluster launcher: AWS node provider on the head node" if key in extra_roots else ""
        )
        lines.append(f"{spec}=={version}{note}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="print infra/requirements.lock for this environment")
    ap.add_argument("--lock", action="store_true", help="print the lock file to stdout")
    if ap.parse_args().lock:
        sys.stdout.write(generate_lock())

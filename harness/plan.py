"""Spec -> plan: the DAG of stages with content-addressed keys.

A stage's key is ``sha256(name, version, canonical JSON of its slice, fingerprints of the
input files its slice names, upstream keys)``. Nothing outside the slice enters it. Planning
imports no torch or vllm.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec.load import LoadedSpec
from harness.stages.base import StageDef, load_registry, stage_order

KEY_CHARS = 20
MANIFEST = "manifest.json"


def canonical_json(obj: Any) -> str:
    """Key-order-independent JSON used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stage_key(
    name: str,
    version: str,
    slice_: dict[str, Any],
    files: dict[str, Any],
    upstream: dict[str, str],
) -> str:
    """The content-addressed key of a stage.

    Args:
        name: Stage name.
        version: Stage version string.
        slice_: Dotted spec path -> resolved value.
        files: Dotted path -> content fingerprint of the file(s) it names.
        upstream: Input role -> upstream stage key.

    Returns:
        A hex digest prefix of ``KEY_CHARS`` characters.
    """
    material = {
        "stage": name,
        "version": version,
        "slice": slice_,
        "files": files,
        "upstream": upstream,
    }
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()[:KEY_CHARS]


_FP_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (memoised on path, size and mtime)."""
    st = path.stat()
    ck = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if ck not in _FP_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FP_CACHE[ck] = h.hexdigest()
    return _FP_CACHE[ck]


def fingerprint(path: Path) -> str:
    """Content fingerprint of a file or a directory tree (names and file hashes)."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
            h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def get_path(data: Any, dotted: str) -> Any:
    """Value at a dotted path; ``[*]`` maps over a list (``a.b[*].c``)."""
    head, _, rest = dotted.partition(".")
    if head.endswith("[*]"):
        items = data.get(head[:-3]) if isinstance(data, dict) else None
        if items is None:
            return None
        return [get_path(it, rest) if rest else it for it in items]
    value = data.get(head) if isinstance(data, dict) else None
    if not rest or value is None:
        return value
    return get_path(value, rest)


@dataclass(frozen=True)
class PlannedStage:
    """One stage of a plan."""

    name: str
    definition: StageDef
    slice: dict[str, Any]
    files: dict[str, Any]
    inputs: dict[str, str]
    upstream_keys: dict[str, str]
    key: str
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """An ordered list of stages, plus where their outputs live."""

    loaded: LoadedSpec
    stages: tuple[PlannedStage, ...]
    root: Path
    project_root: Path

    def stage_dir(self, st: PlannedStage) -> Path:
        """The finished dir of a stage (exists iff complete, with a manifest)."""
        return self.root / "stages" / st.definition.name / st.key

    def is_cached(self, st: PlannedStage) -> bool:
        """True when the stage's finished dir with its manifest exists."""
        return (self.stage_dir(st) / MANIFEST).is_file()

    def by_name(self, name: str) -> PlannedStage:
        """The planned stage of that name."""
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    def history_path(self) -> Path:
        """Where the slices of the last run of this spec are recorded."""
        return self.root / "history" / f"{self.loaded.spec.name}.json"


def _fingerprints(
    stage: StageDef, slice_: dict[str, Any], project_root: Path
) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    missing: list[str] = []
    named: list[tuple[str, Any]] = []
    for dotted in stage.files:
        head = next((r for r in stage.reads if dotted == r or dotted.startswith(r + ".")), None)
        if head is None:
            raise HarnessError(f"stage `{stage.name}`: file path `{dotted}` is outside its reads")
        value = slice_[head] if dotted == head else get_path(slice_[head], dotted[len(head) + 1 :])
        named.append((dotted, value))
    for label, derive in stage.derived_files.items():
        named.append((label, derive(slice_)))
    for dotted, value in named:
        values = value if isinstance(value, list) else [value]
        fps = []
        for v in values:
            if v is None:
                fps.append(None)
                continue
            p = Path(v)
            p = p if p.is_absolute() else project_root / p
            if not p.exists():
                missing.append(f"`{dotted}`: file not found: {v} (resolved to {p})")
                fps.append(f"missing:{v}")
                continue
            fps.append(fingerprint(p))
        out[dotted] = fps if isinstance(value, list) else fps[0]
    return out, missing


def build_plan(
    loaded: LoadedSpec, project_root: Path | None = None, *, strict: bool = True
) -> Plan:
    """Compile a validated spec into a plan.

    Args:
        loaded: The loaded spec.
        project_root: Root for relative paths (default: the current directory).
        strict: Fail on missing input files (``False``: record them in ``missing``, for
            showing a plan on a machine that lacks the data).

    Returns:
        The plan, stages in execution order.

    Raises:
        HarnessError: A listed stage is not implemented, lacks a required upstream, or an
            input file is missing.
    """
    project_root = (project_root or Path.cwd()).resolve()
    spec = loaded.spec
    stages = _plan_stages(loaded, project_root, strict, with_report=True)
    if "report" in stages and spec.report.baselines:
        stages = _add_baselines(loaded, project_root, strict, stages)
    runs_root = Path(spec.run.root)
    runs_root = runs_root if runs_root.is_absolute() else project_root / runs_root
    env_root = os.environ.get("HARNESS_RUNS_ROOT")
    if env_root:
        runs_root = Path(env_root).resolve()
    return Plan(loaded, tuple(stages.values()), runs_root, project_root)


def _plan_stages(
    loaded: LoadedSpec, project_root: Path, strict: bool, *, with_report: bool
) -> dict[str, PlannedStage]:
    registry = load_registry()
    spec = loaded.spec
    dumped = spec.model_dump(mode="json", by_alias=True)
    wanted = [s for s in stage_order() if s in spec.stages and (with_report or s != "report")]
    planned: dict[str, PlannedStage] = {}
    for name in wanted:
        if name not in registry:
            raise HarnessError(f"stage `{name}` is listed in `stages` but not implemented")
        d = registry[name]
        slice_ = {r: get_path(dumped, r) for r in d.reads}
        files, missing = _fingerprints(d, slice_, project_root)
        if missing and strict:
            raise HarnessError("; ".join(missing))
        inputs: dict[str, str] = {}
        for role, candidates in {**d.inputs, **d.optional_inputs}.items():
            hit = next((c for c in candidates if c in planned), None)
            if hit is None and role in d.inputs:
                need = " or ".join(f"`{c}`" for c in candidates)
                raise HarnessError(f"stage `{name}` needs {need} before it in `stages`")
            if hit is not None:
                inputs[role] = hit
        upstream_keys = {role: planned[s].key for role, s in inputs.items()}
        key = stage_key(name, d.version, slice_, files, upstream_keys)
        planned[name] = PlannedStage(
            name, d, slice_, files, inputs, upstream_keys, key, tuple(missing)
        )
    return planned


def _add_baselines(
    loaded: LoadedSpec, project_root: Path, strict: bool, main: dict[str, PlannedStage]
) -> dict[str, PlannedStage]:
    """Add each ``report.baselines`` variant's stages (deduplicated by key) before the
    report, and wire the variant's score into the report as input ``baseline:<name>``."""
    from harness.spec.load import load_spec

    report = main.pop("report")
    out = dict(main)
    by_key = {st.key: name for name, st in main.items()}
    extra_inputs: dict[str, str] = {}
    for bname, overrides in loaded.spec.report.baselines.items():
        variant = load_spec(loaded.path, [*loaded.overrides, *overrides])
        sub = _plan_stages(variant, project_root, strict, with_report=False)
        if "score" not in sub:
            raise HarnessError(f"`report.baselines.{bname}`: the variant has no `score` stage")
        rename: dict[str, str] = {}
        for name, st in sub.items():
            if st.key in by_key:
                rename[name] = by_key[st.key]
                continue
            new = f"{bname}/{name}"
            rename[name] = by_key[st.key] = new
            inputs = {role: rename[s] for role, s in st.inputs.items()}
            out[new] = PlannedStage(
                new, st.definition, st.slice, st.files, inputs, st.upstream_keys, st.key, st.missing
            )
        extra_inputs[f"baseline:{bname}"] = rename["score"]
    inputs = {**report.inputs, **extra_inputs}
    upstream_keys = {role: out[s].key for role, s in inputs.items()}
    key = stage_key("report", report.definition.version, report.slice, report.files, upstream_keys)
    out["report"] = PlannedStage(
        "report", report.definition, report.slice, report.files, inputs, upstream_keys, key
    )
    return out


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def changed_fields(previous: dict[str, Any] | None, st: PlannedStage) -> list[str]:
    """Dotted fields of a stage's slice (and inputs) that differ from the last run's record."""
    if previous is None:
        return ["(no previous run)"]
    before = _flatten(previous.get("slice", {}))
    now = _flatten(st.slice)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if previous.get("files") != st.files:
        changed += [
            f"{k} (file content)"
            for k in st.files
            if previous.get("files", {}).get(k) != st.files[k]
        ]
    if previous.get("version") != st.definition.version:
        changed.append("(stage version)")
    ups = previous.get("upstream_keys", {})
    changed += [
        f"upstream {st.inputs[r]}" for r in st.upstream_keys if ups.get(r) != st.upstream_keys[r]
    ]
    return changed


def load_history(plan: Plan) -> dict[str, Any]:
    """The per-stage record of the last run of this spec (empty if none)."""
    p = plan.history_path()
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def save_history(plan: Plan) -> None:
    """Record this plan's slices as the last run of its spec (atomic write)."""
    p = plan.history_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    record = {
        st.name: {
            "key": st.key,
            "version": st.definition.version,
            "slice": st.slice,
            "files": st.files,
            "upstream_keys": st.upstream_keys,
        }
        for st in plan.stages
    }
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, p)

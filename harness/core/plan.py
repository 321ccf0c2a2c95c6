"""Spec -> plan: the DAG of stages with content-addressed keys, and why each will run.

A stage's key is the sha256 of (stage contract version, stage name, its version marker, the
canonical JSON of its slice, fingerprints of the input files the slice names, the digests of
its code dependencies (normalised source: see :mod:`harness.core.codehash`), the pins of every
environment it uses with the platform, its upstream keys, and for a stage that reads
``report.baselines`` the keys of the baselines' stages it reads). Nothing outside that enters
the key; everything inside it does. In the current-interpreter mode (``run.env_mode:
current``) an environment enters the key as the mode and the installed versions of its pinned
packages instead of the pin file's digest (:func:`harness.core.envs.environment`). Planning imports
no torch or vllm.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness import config
from harness.atomic import write_json
from harness.core import envs
from harness.core.artifacts import MANIFEST
from harness.core.codehash import code_digests
from harness.core.stage import StageDef, stage_defs
from harness.errors import HarnessError
from harness.public_data import DatasetNotCachedError, is_ref, resolve_path
from harness.registry import did_you_mean
from harness.spec.load import LoadedSpec
from harness.spec.paths import under

CONTRACT = 2
"""Version of the key material. 1: name, version, slice, files, upstream (no code, no
environments); 2: adds code digests, environment pins and the platform."""
KEY_CHARS = 20


def canonical_json(obj: Any) -> str:
    """Key-order-independent JSON used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stage_key(
    name: str,
    version: str,
    slice_: dict[str, Any],
    files: dict[str, Any],
    upstream: dict[str, str],
    code: dict[str, str] | None = None,
    environments: dict[str, Any] | None = None,
    baselines: dict[str, dict[str, str]] | None = None,
) -> str:
    """The content-addressed key of a stage.

    Args:
        name: Stage name.
        version: Stage version marker.
        slice_: Dotted spec path -> resolved value.
        files: Dotted path -> content fingerprint of the file(s) it names.
        upstream: Input role -> upstream stage key.
        code: Project file -> digest of its normalised source.
        environments: Role -> pin file, pins digest and platform.
        baselines: Baseline variant -> stage name -> that stage's key (the report's; absent
            from the key material when there is none, so other keys do not depend on it).

    Returns:
        A hex digest prefix of ``KEY_CHARS`` characters.
    """
    material = {
        "contract": CONTRACT,
        "stage": name,
        "version": version,
        "slice": slice_,
        "files": files,
        "upstream": upstream,
        "code": code or {},
        "envs": environments or {},
    }
    if baselines:
        material["baselines"] = baselines
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
    code: dict[str, str] = field(default_factory=dict)
    envs: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, str]] = field(default_factory=dict)
    """Baseline variant -> stage name (the definition's) -> planned stage name of the variant's
    stage (for a stage declaring ``baselines``)."""
    baseline_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    """Baseline variant -> stage name -> that stage's key (part of this stage's key)."""

    @property
    def upstream_names(self) -> list[str]:
        """The planned stages this one reads: its inputs, then its baselines' stages."""
        names = [*self.inputs.values()]
        names += [s for stages in self.baselines.values() for s in stages.values()]
        return list(dict.fromkeys(names))

    def record(self) -> dict[str, Any]:
        """What the history and the manifest keep of the key material."""
        return {
            "contract": CONTRACT,
            "key": self.key,
            "version": self.definition.version,
            "slice": self.slice,
            "files": self.files,
            "code": self.code,
            "envs": self.envs,
            "upstream_keys": self.upstream_keys,
            **({"baseline_keys": self.baseline_keys} if self.baseline_keys else {}),
        }


@dataclass(frozen=True)
class Plan:
    """An ordered list of stages, plus where their outputs live."""

    loaded: LoadedSpec
    stages: tuple[PlannedStage, ...]
    root: Path
    project_root: Path
    platform: str = "cpu"
    env_mode: str = "pinned"
    installed: dict[str, str] | None = None
    """Current mode: the installed distributions the keys were computed from."""

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
        """Where the key material of the last run of this spec is recorded."""
        return self.root / "history" / f"{self.loaded.spec.name}.json"


def runs_root(loaded: LoadedSpec, project_root: Path) -> Path:
    """``$HARNESS_RUNS_ROOT``, else ``run.root`` (relative to the project root)."""
    env_root = config.get("HARNESS_RUNS_ROOT")
    if env_root:
        return Path(env_root).resolve()
    root = Path(loaded.spec.run.root)
    return root if root.is_absolute() else project_root / root


def _named_files(stage: StageDef, slice_: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(dotted path or label, value)`` of every input file a stage's slice names."""
    named: list[tuple[str, Any]] = []
    for dotted in stage.files:  # derived from the reads: each lies at or below one of them
        head = next(r for r in stage.reads if under(dotted, r))
        # The read's value under a stand-in name, so that the rest may start with `[*]`.
        named.append((dotted, get_path({"": slice_[head]}, dotted[len(head) :])))
    for label, derive in stage.derived_files.items():
        named.append((label, derive(slice_)))
    return named


def _fingerprints(
    stage: StageDef, slice_: dict[str, Any], project_root: Path
) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    missing: list[str] = []
    for dotted, value in _named_files(stage, slice_):
        values = value if isinstance(value, list) else [value]
        fps = []
        for v in values:
            if v is None:
                fps.append(None)
                continue
            try:
                p = resolve_path(v, project_root)
            except HarnessError as e:  # a named dataset that is not in the local cache
                missing.append(f"`{dotted}`: {e}")
                fps.append(f"missing:{v}")
                continue
            if not p.exists():
                missing.append(f"`{dotted}`: file not found: {v} (resolved to {p})")
                fps.append(f"missing:{v}")
                continue
            fps.append(fingerprint(p) if not is_ref(v) else f"{v}@{fingerprint(p)}")
        out[dotted] = fps if isinstance(value, list) else fps[0]
    return out, missing


def input_problems(
    loaded: LoadedSpec, project_root: Path | None = None
) -> tuple[list[str], list[str]]:
    """The input files of a spec's stages checked without reading them (``harness
    validate``): an unknown dataset, a path a dataset lacks, or a ``shopping_mmlu.files``
    name the release lacks is an error; a dataset that is not in the local cache (``harness
    data fetch`` gets it) or a local file that is not there (a spec may name data this
    machine lacks) is a warning: ``harness run`` fails on either before any stage runs.

    Args:
        loaded: The loaded spec.
        project_root: Root for relative paths (default: the current directory).

    Returns:
        ``(errors, warnings)``, each naming the spec key.
    """
    root = (project_root or Path.cwd()).resolve()
    dumped = loaded.spec.model_dump(mode="json", by_alias=True)
    errors: list[str] = []
    warnings: list[str] = []
    seen: set[tuple[str, str]] = set()
    for name, d in stage_defs().items():
        if name not in loaded.spec.stages:
            continue
        slice_ = {r: get_path(dumped, r) for r in d.reads}
        for dotted, value in _named_files(d, slice_):
            for v in value if isinstance(value, list) else [value]:
                if v is None or (dotted, str(v)) in seen:
                    continue
                seen.add((dotted, str(v)))
                try:
                    p = resolve_path(v, root)
                except DatasetNotCachedError as e:
                    warnings.append(f"`{dotted}`: {e}")
                    continue
                except HarnessError as e:
                    errors.append(f"`{dotted}`: {e}")
                    continue
                if not p.exists():
                    warnings.append(f"`{dotted}`: file not found: {v} (resolved to {p})")
    errors += _mmlu_file_problems(loaded, root)
    return errors, warnings


def _mmlu_file_problems(loaded: LoadedSpec, root: Path) -> list[str]:
    """``shopping_mmlu.files`` names the release (when it is here) has no file of."""
    cfg = loaded.spec.shopping_mmlu
    if cfg is None or not cfg.files or not {"mmlu_infer", "mmlu_score"} & set(loaded.spec.stages):
        return []
    from harness.shopbench.mmlu.data import file_names

    try:
        release = resolve_path(cfg.data, root)
        kind = "skills" if cfg.mode == "skill" else "tasks"
        known = file_names(release, kind)
    except HarnessError:  # reported with the data path, or not cached
        return []
    return [
        f"`shopping_mmlu.files`: the release ({cfg.data}) has no {kind[:-1]} file `{n}`"
        + did_you_mean(n, known)
        for n in cfg.files
        if n not in known
    ]


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
    platform = envs.detect_platform(spec.run.platform)
    where = _Where(platform, envs.env_mode(spec.run.env_mode))
    stages = _plan_stages(loaded, project_root, strict, where, with_report=True)
    if spec.report.baselines and any(st.definition.baselines for st in stages.values()):
        stages = _add_baselines(loaded, project_root, strict, where, stages)
    needed_by: dict[str, list[str]] = {}  # each missing input once, with the stages needing it
    for st in stages.values():
        for m in st.missing:
            needed_by.setdefault(m, []).append(st.name)
    if needed_by and strict:
        raise HarnessError(
            "missing inputs:\n"
            + "\n".join(f"  - {m} (needed by {', '.join(n)})" for m, n in needed_by.items())
        )
    return Plan(
        loaded,
        tuple(stages.values()),
        runs_root(loaded, project_root),
        project_root,
        platform,
        where.mode,
        where._installed,
    )


@dataclass
class _Where:
    """Platform and environment mode of a plan, with the environments' key material
    (computed once per role: current mode reads the installed distributions)."""

    platform: str
    mode: str
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)
    _installed: dict[str, str] | None = None

    def environment(self, role: str) -> dict[str, str]:
        """The key material of a role's environment."""
        if role not in self._envs:
            if self.mode == "current" and self._installed is None:
                self._installed = envs.installed_versions()
            self._envs[role] = envs.environment(role, self.platform, self.mode, self._installed)
        return self._envs[role]


def _plan_stages(
    loaded: LoadedSpec, project_root: Path, strict: bool, where: _Where, *, with_report: bool
) -> dict[str, PlannedStage]:
    defs = stage_defs()
    spec = loaded.spec
    dumped = spec.model_dump(mode="json", by_alias=True)
    unknown = [s for s in spec.stages if s not in defs]
    if unknown:
        raise HarnessError(f"stage `{unknown[0]}` is listed in `stages` but not implemented")
    wanted = [s for s in defs if s in spec.stages and (with_report or not defs[s].upstream_all)]
    planned: dict[str, PlannedStage] = {}
    for name in wanted:
        d = defs[name]
        slice_ = {r: get_path(dumped, r) for r in d.reads}
        _check_slice(d, slice_, loaded)
        files, missing = _fingerprints(d, slice_, project_root)
        inputs: dict[str, str] = {}
        for role, candidates in {**d.inputs, **d.optional_inputs}.items():
            hit = next((c for c in candidates if c in planned), None)
            if hit is None and role in d.inputs:
                need = " or ".join(f"`{c}`" for c in candidates)
                raise HarnessError(f"stage `{name}` needs {need} before it in `stages`")
            if hit is not None:
                inputs[role] = hit
        if d.upstream_all:
            inputs.update({s: s for s in planned if s not in inputs.values()})
        upstream_keys = {role: planned[s].key for role, s in inputs.items()}
        code = code_digests(d.code_modules)
        environments = {role: where.environment(role) for role in d.envs_for(slice_)}
        key = stage_key(name, d.version, slice_, files, upstream_keys, code, environments)
        planned[name] = PlannedStage(
            name, d, slice_, files, inputs, upstream_keys, key, tuple(missing), code, environments
        )
    return planned


def _check_slice(d: StageDef, slice_: dict[str, Any], loaded: LoadedSpec) -> None:
    """The stage's slice validates as its slice model (a stage declaring a type the spec's
    values do not have fails here, before anything runs)."""
    try:
        d.slice_model.model_validate(slice_)
    except ValidationError as e:
        problems = "; ".join(
            f"`{'.'.join(str(x) for x in err['loc'])}`: {err['msg']}" for err in e.errors()
        )
        raise HarnessError(
            f"{loaded.path}: stage `{d.name}` cannot read its slice ({problems})"
        ) from None


def _add_baselines(
    loaded: LoadedSpec,
    project_root: Path,
    strict: bool,
    where: _Where,
    main: dict[str, PlannedStage],
) -> dict[str, PlannedStage]:
    """Add each ``report.baselines`` variant's stages (deduplicated by key: a stage the run
    already has is not repeated) before the stages that read baselines, and hand those their
    declared stages of each variant (``PlannedStage.baselines``, their keys in the reader's
    key). A variant's own stages are named ``<variant>/<stage>`` in the plan."""
    from harness.spec.load import load_spec

    readers = {n: st for n, st in main.items() if st.definition.baselines}
    out = {n: st for n, st in main.items() if n not in readers}
    by_key = {st.key: name for name, st in out.items()}
    wired: dict[str, dict[str, str]] = {}
    for bname, overrides in loaded.spec.report.baselines.items():
        if overrides is None:  # dropped
            continue
        if isinstance(overrides, list):
            variant = load_spec(loaded.path, [*loaded.overrides, *overrides])
        else:  # another spec file, with this run's command-line overrides too
            other = loaded.path.parent / overrides.spec
            variant = load_spec(other, [*loaded.overrides, *overrides.overrides])
        sub = _plan_stages(variant, project_root, strict, where, with_report=False)
        if not {"score", "mmlu_score"} & set(sub):
            raise HarnessError(
                f"`report.baselines.{bname}`: the variant has no `score` or `mmlu_score` stage"
            )
        rename: dict[str, str] = {}
        for name, st in sub.items():
            if st.key in by_key:
                rename[name] = by_key[st.key]
                continue
            new = f"{bname}/{name}"
            rename[name] = by_key[st.key] = new
            inputs = {role: rename[s] for role, s in st.inputs.items()}
            out[new] = replace(st, name=new, inputs=inputs)
        wired[bname] = {s: rename[s] for s in sub}
    for name, st in readers.items():
        baselines = {
            b: {s: planned for s, planned in stages.items() if s in st.definition.baselines}
            for b, stages in wired.items()
        }
        keys = {b: {s: out[p].key for s, p in stages.items()} for b, stages in baselines.items()}
        d = st.definition
        key = stage_key(
            d.name, d.version, st.slice, st.files, st.upstream_keys, st.code, st.envs, keys
        )
        out[name] = replace(st, baselines=baselines, baseline_keys=keys, key=key)
    return out


# --------------------------------------------------------------------------- why


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _diff(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))


EARLIER_VERSION = (
    "results of an earlier harness version (stage contract v1: their keys did not cover "
    "code and environments) are not reused"
)


def reasons(plan: Plan, history: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Why each stage that is not cached will run.

    Returns:
        Stage name -> reasons, each ``{"kind", "detail"}`` with kind one of ``no previous
        run``, ``earlier version``, ``spec changed``, ``input file changed``, ``code
        changed``, ``environment changed``, ``stage version changed``, ``upstream changed``,
        ``not in the store``. Cached stages map to an empty list.
    """
    out: dict[str, list[dict[str, str]]] = {}
    for st in plan.stages:
        if plan.is_cached(st):
            out[st.name] = []
            continue
        out[st.name] = _why(plan, st, history.get(st.name), out)
    return out


def _why(
    plan: Plan,
    st: PlannedStage,
    previous: dict[str, Any] | None,
    earlier: dict[str, list[dict[str, str]]],
) -> list[dict[str, str]]:
    def r(kind: str, detail: str = "") -> dict[str, str]:
        return {"kind": kind, "detail": detail}

    if previous is None:
        return (
            [r("earlier version", EARLIER_VERSION)]
            if _v1_results(plan, st)
            else [r("no previous run")]
        )
    if previous.get("contract") != CONTRACT:
        return [r("earlier version", EARLIER_VERSION)]
    why = []
    changed = _diff(_flatten(previous.get("slice", {})), _flatten(st.slice))
    if changed:
        why.append(r("spec changed", ", ".join(changed)))
    files = _diff(previous.get("files", {}), st.files)
    if files:
        why.append(r("input file changed", ", ".join(files)))
    code = _diff(previous.get("code", {}), st.code)
    if code:
        why.append(r("code changed", ", ".join(code)))
    env_changed = [
        f"{e['file']} ({e['platform']}" + (", current interpreter)" if "mode" in e else ")")
        for role, e in st.envs.items()
        if previous.get("envs", {}).get(role) != e
    ]
    if env_changed:
        why.append(r("environment changed", ", ".join(sorted(set(env_changed)))))
    if previous.get("version") != st.definition.version:
        why.append(
            r("stage version changed", f"{previous.get('version')} -> {st.definition.version}")
        )
    ups = previous.get("upstream_keys", {})
    changed_up = [st.inputs[role] for role, key in st.upstream_keys.items() if ups.get(role) != key]
    before = previous.get("baseline_keys", {})
    changed_up += [
        st.baselines[b][s]
        for b, keys in st.baseline_keys.items()
        for s, key in keys.items()
        if before.get(b, {}).get(s) != key
    ]
    for name in dict.fromkeys(changed_up):
        cause = "; ".join(
            f"{x['kind']}: {x['detail']}" if x["detail"] else x["kind"]
            for x in earlier.get(name, [])
            if x["kind"] != "upstream changed"
        )
        why.append(r("upstream changed", f"{name} ({cause})" if cause else name))
    return why or [r("not in the store", str(plan.stage_dir(st)))]


def _v1_results(plan: Plan, st: PlannedStage) -> bool:
    """Whether the store holds finished dirs of this stage made under contract v1."""
    root = plan.root / "stages" / st.definition.name
    for m in root.glob(f"*/{MANIFEST}"):
        try:
            if "contract" not in json.loads(m.read_text(encoding="utf-8")):
                return True
        except (OSError, json.JSONDecodeError):
            continue
    return False


def load_history(plan: Plan) -> dict[str, Any]:
    """The per-stage record of the last run of this spec (empty if none)."""
    p = plan.history_path()
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def save_history(plan: Plan) -> None:
    """Record this plan's key material as the last run of its spec (atomic write)."""
    write_json(plan.history_path(), {st.name: st.record() for st in plan.stages})

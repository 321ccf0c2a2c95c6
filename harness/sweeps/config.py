"""Sweep files: a W&B sweep config plus the base spec it applies to.

A sweep file is what ``wandb.sweep`` takes (``method``, ``metric``, ``parameters``, ``name``,
``run_cap``, ``project``, ``entity``) with three additions: ``spec`` (the base experiment spec,
relative to the sweep file), ``overrides`` (``key=value`` applied to the base before the swept
parameters) and ``seed`` (of random sampling and of the Bayesian search offline). Parameter
keys are dotted spec paths (``decoding.multiple-choice.temperature``); every key and every
value it can take is validated against the spec schema before any trial runs.

Like the spec loader, this reads YAML only through OmegaConf.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.errors import HarnessError, SpecError
from harness.spec.load import LoadedSpec, fields_at, line_of, load_spec, read_yaml, suggest

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
# W&B distribution -> the parameter keys it needs (the ones Ray Tune has a domain for).
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "categorical": ("values",),
    "int_uniform": ("min", "max"),
    "uniform": ("min", "max"),
    "q_uniform": ("min", "max", "q"),
    "log_uniform": ("min", "max"),
    "log_uniform_values": ("min", "max"),
    "q_log_uniform": ("min", "max", "q"),
    "q_log_uniform_values": ("min", "max", "q"),
    "normal": ("mu", "sigma"),
    "q_normal": ("mu", "sigma", "q"),
}
UNSUPPORTED_DISTRIBUTIONS = (
    "inv_log_uniform",
    "inv_log_uniform_values",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)
# W&B's defaults for the optional distribution arguments.
ARG_DEFAULTS = {"q": 1.0, "mu": 0.0, "sigma": 1.0}
PARAM_KEYS = ("value", "values", "distribution", "min", "max", "q", "mu", "sigma")
TOP_KEYS = (
    "name",
    "description",
    "method",
    "metric",
    "parameters",
    "spec",
    "overrides",
    "run_cap",
    "seed",
    "project",
    "entity",
)
NOT_OFFLINE = {
    "early_terminate": "trials report one final metric, so there is nothing to stop early",
    "program": "trials run through the harness, not a training script",
    "command": "trials run through the harness, not a training script",
}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RESERVED_PARAMS = {"name": "each trial's spec name is set by the sweep"}


class SweepError(HarnessError):
    """One or more problems in a sweep file; the message lists all of them."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        head = f"invalid sweep {source}" if source else "invalid sweep"
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{head}: {len(problems)} problem(s)\n{body}")


@dataclass(frozen=True)
class Metric:
    """What the sweep optimises: a metric of the trial's score stage (W&B's ``metric``)."""

    name: str
    goal: str = "minimize"

    @property
    def mode(self) -> str:
        """Ray Tune's spelling of the goal (``max`` / ``min``)."""
        return "max" if self.goal == "maximize" else "min"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.goal == "maximize" else a < b


@dataclass(frozen=True)
class Parameter:
    """One swept spec path.

    Attributes:
        key: Dotted spec path.
        distribution: A W&B distribution name (``constant`` / ``categorical`` for
            ``value`` / ``values``).
        args: The distribution's arguments (``value``, ``values``, ``min``, ``max``, ``q``,
            ``mu``, ``sigma``), W&B defaults filled in.
        where: ``file:line`` of the key in the sweep file.
    """

    key: str
    distribution: str
    args: dict[str, Any]
    where: str

    def samples(self) -> list[Any]:
        """Values that bound what the parameter can take (used to validate it)."""
        a, d = self.args, self.distribution
        if d == "constant":
            return [a["value"]]
        if d == "categorical":
            return list(a["values"])
        if d in ("log_uniform", "q_log_uniform"):
            return [math.exp(a["min"]), math.exp(a["max"])]
        if d in ("normal", "q_normal"):
            return [a["mu"]]
        return [a["min"], a["max"]]


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file.

    Attributes:
        path: The sweep file.
        name: Sweep name (results under ``<runs root>/sweeps/<name>/``).
        method: ``grid``, ``random`` or ``bayes``.
        metric: What is optimised.
        parameters: The swept spec paths, in file order.
        spec_path: The base spec file.
        overrides: ``key=value`` applied to the base spec before the parameters.
        run_cap: Maximum number of trials (required for random and bayes).
        seed: Seed of random sampling and of the offline Bayesian search.
        project: W&B project (default: the spec's ``tracking.project``).
        entity: W&B entity (default: the spec's ``tracking.entity``).
        base: The base spec with ``overrides`` applied, validated.
        raw: The sweep file as a plain dict.
    """

    path: Path
    name: str
    method: str
    metric: Metric
    parameters: tuple[Parameter, ...]
    spec_path: Path
    overrides: tuple[str, ...]
    run_cap: int | None
    seed: int
    project: str
    entity: str | None
    base: LoadedSpec
    raw: dict[str, Any] = field(repr=False)

    @property
    def keys(self) -> list[str]:
        """The swept spec paths."""
        return [p.key for p in self.parameters]

    def wandb_config(self) -> dict[str, Any]:
        """The config ``wandb.sweep`` takes: the file without the harness's own keys."""
        out = {
            k: v
            for k, v in self.raw.items()
            if k not in ("spec", "overrides", "seed", "project", "entity")
        }
        out.setdefault("name", self.name)
        out["metric"] = {"name": self.metric.name, "goal": self.metric.goal}
        return out

    def digest(self) -> str:
        """Identity of the search: base spec, method, metric, parameters and seed (not the
        run cap, which may grow between runs)."""
        material = {
            "base": self.base.resolved,
            "method": self.method,
            "metric": [self.metric.name, self.metric.goal],
            "parameters": [[p.key, p.distribution, p.args] for p in self.parameters],
            "seed": self.seed,
        }
        text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def override_for(key: str, value: Any) -> str:
    """A ``key=value`` override carrying ``value`` exactly (JSON is valid YAML flow)."""
    return f"{key}={json.dumps(value)}"


def _schema_problem(key: str) -> str | None:
    """Why ``key`` is not a spec path, with a full-path suggestion; None when it may be."""
    parts = key.split(".")
    if not all(parts):
        return f"`{key}` is not a dotted spec path"
    for i, part in enumerate(parts):
        fields = fields_at(tuple(parts[:i]))
        if not fields:
            return None  # below a free-form value: the spec validation decides
        if part not in fields:
            close = difflib.get_close_matches(part, fields, n=1, cutoff=0.6)
            hint = f" (did you mean `{'.'.join([*parts[:i], close[0]])}`?)" if close else ""
            at = f"`{'.'.join(parts[:i])}`" if i else "the spec"
            return f"unknown spec key: {at} has no `{part}`{hint}"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _parse_parameter(
    key: str, body: Any, where: str, method: str
) -> tuple[Parameter | None, list[str]]:
    at = f"{where}: parameter `{key}`"
    if not isinstance(body, dict):
        return None, [f"{at}: must be a mapping with `values`, `value` or a distribution"]
    if body.get("distribution") in UNSUPPORTED_DISTRIBUTIONS:
        supported = ", ".join(DISTRIBUTIONS)
        return None, [
            f"{at}: distribution `{body['distribution']}` is not supported (supported: {supported})"
        ]
    problems = []
    if "parameters" in body:
        problems.append(f"{at}: nested `parameters` are not supported; use dotted keys")
    if "probabilities" in body:
        problems.append(f"{at}: `probabilities` is not supported offline; repeat values instead")
    for k in body:
        if k not in (*PARAM_KEYS, "parameters", "probabilities"):
            problems.append(f"{at}: unknown key `{k}`" + suggest(str(k), list(PARAM_KEYS)))
    if problems:
        return None, problems
    dist = body.get("distribution")
    if dist is None:
        if "values" in body:
            dist = "categorical"
        elif "value" in body:
            dist = "constant"
        elif "min" in body and "max" in body:
            both_int = all(
                isinstance(body[k], int) and not isinstance(body[k], bool) for k in ("min", "max")
            )
            dist = "int_uniform" if both_int else "uniform"
        else:
            return None, [f"{at}: give `values`, `value`, or `min` and `max` (or a `distribution`)"]
    if dist not in DISTRIBUTIONS:
        return None, [
            f"{at}: unknown distribution `{dist}`" + suggest(str(dist), list(DISTRIBUTIONS))
        ]
    needs = DISTRIBUTIONS[dist]
    args = {k: body.get(k, ARG_DEFAULTS.get(k)) for k in needs}
    missing = [k for k in needs if args[k] is None]
    if missing:
        return None, [f"{at}: distribution `{dist}` needs " + ", ".join(f"`{k}`" for k in missing)]
    extra = [k for k in body if k not in (*needs, "distribution")]
    if extra:
        problems.append(f"{at}: `{'`, `'.join(extra)}` not used by distribution `{dist}`")
    if dist == "categorical" and (not isinstance(args["values"], list) or not args["values"]):
        problems.append(f"{at}: `values` must be a non-empty list")
    numeric = [k for k in needs if k not in ("value", "values")]
    bad = [k for k in numeric if not _is_number(args[k])]
    if bad:
        problems.append(f"{at}: `{'`, `'.join(bad)}` must be numbers")
    elif "min" in args and args["min"] >= args["max"]:
        problems.append(f"{at}: `min` ({args['min']}) must be below `max` ({args['max']})")
    elif dist == "int_uniform" and not all(isinstance(args[k], int) for k in ("min", "max")):
        problems.append(f"{at}: `int_uniform` needs integer `min` and `max`")
    elif dist.endswith("_values") and args["min"] <= 0:
        problems.append(f"{at}: `{dist}` needs `min` > 0")
    elif "sigma" in args and args["sigma"] <= 0:
        problems.append(f"{at}: `sigma` must be > 0")
    elif "q" in args and args["q"] <= 0:
        problems.append(f"{at}: `q` must be > 0")
    if method == "grid" and dist not in ("constant", "categorical"):
        problems.append(f"{at}: grid search needs `values` or `value` (got distribution `{dist}`)")
    if problems:
        return None, problems
    return Parameter(key, dist, args, where), []


def _problem_text(err: SpecError) -> list[str]:
    return [p.removeprefix("command-line override: ") for p in err.problems]


class _Problems:
    """Collects problems, each prefixed with the ``file:line`` of the key it is about."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = [path.resolve()]
        self.items: list[str] = []

    def where(self, *loc: str | int) -> str:
        return line_of(self.files, loc) or str(self.path)

    def add(self, loc: tuple[str | int, ...], msg: str) -> None:
        self.items.append(f"{self.where(*loc)}: {msg}")


def _metric(raw: dict[str, Any], out: _Problems) -> Metric | None:
    m = raw.get("metric")
    if not isinstance(m, dict) or not isinstance(m.get("name"), str):
        out.add(("metric",), "`metric` needs a `name` (a metric of the score stage)")
        return None
    for k in m:
        if k not in ("name", "goal", "target"):
            hint = suggest(str(k), ["name", "goal", "target"])
            out.add(("metric", k), f"unknown key `metric.{k}`{hint}")
    goal = m.get("goal", "minimize")  # W&B's default
    if goal not in GOALS:
        out.add(("metric", "goal"), "`metric.goal` must be maximize or minimize")
        return None
    return Metric(m["name"], goal)


def _int_setting(raw: dict[str, Any], key: str, out: _Problems, *, minimum: int | None) -> Any:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
        out.add((key,), f"`{key}` must be an integer" + (f" >= {minimum}" if minimum else ""))
        return None
    return v


def _base_spec(
    raw: dict[str, Any], path: Path, overrides: list[str], out: _Problems
) -> tuple[Path, LoadedSpec | None]:
    rel = raw.get("spec")
    if not isinstance(rel, str):
        out.add(("spec",), "`spec` must name the base spec (relative to the sweep file)")
        return path, None
    spec_path = (path.parent / rel).resolve()
    if not spec_path.is_file():
        out.add(("spec",), f"base spec not found: {rel} (resolved to {spec_path})")
        return spec_path, None
    try:
        return spec_path, load_spec(spec_path, overrides)
    except SpecError as e:
        loc = ("overrides",) if overrides else ("spec",)
        for p in _problem_text(e):
            out.add(loc, f"base spec: {p}")
        return spec_path, None


def _parameters(raw: dict[str, Any], method: str, out: _Problems) -> list[Parameter]:
    body = raw.get("parameters")
    if not isinstance(body, dict) or not body:
        out.add(("parameters",), "`parameters` must map spec paths to values or distributions")
        return []
    params = []
    for key, spec in body.items():
        key = str(key)
        at = out.where("parameters", key)
        bad = _schema_problem(key) or (
            f"cannot be swept: {RESERVED_PARAMS[key]}" if key in RESERVED_PARAMS else None
        )
        if bad:
            out.items.append(f"{at}: parameter `{key}`: {bad}")
            continue
        param, errs = _parse_parameter(key, spec, at, method)
        out.items += errs
        if param is not None:
            params.append(param)
    return params


def _check_values(
    spec_path: Path, overrides: list[str], params: list[Parameter], out: _Problems
) -> None:
    """Apply every value (or bound) of every parameter to the base spec and validate it."""
    for param in params:
        for value in param.samples():
            try:
                load_spec(spec_path, [*overrides, override_for(param.key, value)])
            except SpecError as e:
                out.items += [
                    f"{param.where}: parameter `{param.key}` = {value!r}: {p}"
                    for p in _problem_text(e)
                ]


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file, its base spec and every swept key and value.

    Args:
        path: The sweep YAML file.

    Returns:
        The validated sweep.

    Raises:
        SweepError: Listing every problem, each with the sweep file's line and the key; an
            unknown parameter key comes with the closest spec path.
    """
    path = Path(path)
    try:
        raw = OmegaConf.to_container(read_yaml(path), resolve=True)
    except SpecError as e:
        raise SweepError(e.problems, str(path)) from None
    except OmegaConfBaseException as e:
        msg = f"{path}: interpolation failed: {str(e).splitlines()[0]}"
        raise SweepError([msg], str(path)) from None
    assert isinstance(raw, dict)
    out = _Problems(path)
    for k in raw:
        if k in NOT_OFFLINE:
            out.add((k,), f"`{k}` is not supported: {NOT_OFFLINE[k]}")
        elif k not in TOP_KEYS:
            out.add((k,), f"unknown key `{k}`" + suggest(str(k), list(TOP_KEYS)))
    name = str(raw.get("name") or path.stem)
    if not NAME_RE.fullmatch(name):
        out.add(("name",), f"`name` {name!r} may use only letters, digits, `.`, `_`, `-`")
    method = raw.get("method")
    if method not in METHODS:
        out.add(("method",), f"`method` must be one of {', '.join(METHODS)} (got {method!r})")
    metric = _metric(raw, out)
    run_cap = _int_setting(raw, "run_cap", out, minimum=1)
    if method in ("random", "bayes") and "run_cap" not in raw:
        out.add(("method",), f"a {method} sweep needs `run_cap` (it has no natural end)")
    seed = _int_setting(raw, "seed", out, minimum=None) or 0
    overrides = raw.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        out.add(("overrides",), "`overrides` must be a list of key=value strings")
        overrides = []
    spec_path, base = _base_spec(raw, path, overrides, out)
    parameters = _parameters(raw, str(method), out)
    if base is not None:
        _check_values(spec_path, overrides, parameters, out)
    if out.items:
        raise SweepError(out.items, str(path))
    assert base is not None and metric is not None
    tracking = base.spec.tracking
    return Sweep(
        path=path,
        name=name,
        method=str(method),
        metric=metric,
        parameters=tuple(parameters),
        spec_path=spec_path,
        overrides=tuple(overrides),
        run_cap=run_cap,
        seed=seed,
        project=str(raw.get("project") or tracking.project),
        entity=raw.get("entity") or tracking.entity,
        base=base,
        raw=raw,
    )

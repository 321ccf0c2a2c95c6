"""W&B search spaces as Ray Tune domains, and where trial parameters come from.

Grid and random sweeps are expanded with Tune's variant generator, following W&B's
semantics: a grid is the product of every parameter's ``values`` (``run_cap`` keeps the first
ones); a random sweep draws ``run_cap`` trials, ``values`` uniformly, seeded so that a rerun
draws the same trials. A Bayesian sweep asks a Tune search algorithm (Optuna, else HyperOpt)
for each next trial. Ray Tune is imported only here and only when a sweep runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from harness.sweeps.config import Parameter, Sweep, SweepError

BAYES_BACKENDS = (
    ("optuna", "ray.tune.search.optuna", "OptunaSearch"),
    ("hyperopt", "ray.tune.search.hyperopt", "HyperOptSearch"),
)


def tune_domain(param: Parameter, method: str) -> Any:
    """The Ray Tune domain that samples like the W&B parameter.

    Args:
        param: The parameter.
        method: The sweep method (``values`` are a grid axis for ``grid``, a uniform choice
            otherwise).

    Returns:
        A constant, ``tune.grid_search`` spec or a Tune ``Domain``.
    """
    from ray import tune

    a, d = param.args, param.distribution
    if d == "constant":
        return a["value"]
    if d == "categorical":
        return tune.grid_search(list(a["values"])) if method == "grid" else tune.choice(a["values"])
    if d == "int_uniform":
        return tune.randint(a["min"], a["max"] + 1)  # W&B's max is inclusive
    if d == "uniform":
        return tune.uniform(a["min"], a["max"])
    if d == "q_uniform":
        return tune.quniform(a["min"], a["max"], a["q"])
    if d == "log_uniform":  # W&B: min/max are natural logs of the bounds
        return tune.loguniform(math.exp(a["min"]), math.exp(a["max"]))
    if d == "log_uniform_values":
        return tune.loguniform(a["min"], a["max"])
    if d == "q_log_uniform":
        return tune.qloguniform(math.exp(a["min"]), math.exp(a["max"]), a["q"])
    if d == "q_log_uniform_values":
        return tune.qloguniform(a["min"], a["max"], a["q"])
    if d == "normal":
        return tune.randn(a["mu"], a["sigma"])
    if d == "q_normal":
        return tune.qrandn(a["mu"], a["sigma"], a["q"])
    raise SweepError([f"{param.where}: distribution `{d}` has no Ray Tune domain"])


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON, OmegaConf and hashing need plain types)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _ident(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def search_space(sweep: Sweep) -> dict[str, Any]:
    """Parameter key -> Tune domain, in file order."""
    return {p.key: tune_domain(p, sweep.method) for p in sweep.parameters}


def planned_trials(sweep: Sweep) -> list[dict[str, Any]]:
    """Every trial of a grid or random sweep, in order.

    Args:
        sweep: A grid or random sweep.

    Returns:
        One ``{key: value}`` dict per trial (all ``run_cap`` of them for random).
    """
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    space = search_space(sweep)
    keys = sweep.keys
    if sweep.method == "grid":
        trials = [{k: _plain(cfg[k]) for k in keys} for _, cfg in generate_variants(dict(space))]
        return trials[: sweep.run_cap] if sweep.run_cap else trials
    if sweep.method != "random":
        raise SweepError([f"{sweep.path}: `{sweep.method}` trials are not planned ahead"])
    rng = np.random.RandomState(sweep.seed)
    assert sweep.run_cap is not None
    out = []
    for _ in range(sweep.run_cap):
        _, cfg = next(iter(generate_variants(dict(space), random_state=rng)))
        out.append({k: _plain(cfg[k]) for k in keys})
    return out


def bayes_searcher(sweep: Sweep, seed_offset: int = 0) -> Any:
    """A Ray Tune searcher for a Bayesian sweep (Optuna, else HyperOpt).

    Args:
        sweep: The sweep.
        seed_offset: Added to the sweep's seed (a resumed search must not redraw the
            points its first run started from).

    Raises:
        SweepError: Neither optimiser is installed (the message says what to install).
    """
    import importlib

    seed = sweep.seed + seed_offset
    for package, module, cls in BAYES_BACKENDS:
        try:
            importlib.import_module(package)
        except ImportError:
            continue
        searcher_cls = getattr(importlib.import_module(module), cls)
        kwargs = {"seed": seed} if package == "optuna" else {"random_state_seed": seed}
        searcher = searcher_cls(metric=sweep.metric.name, mode=sweep.metric.mode, **kwargs)
        # Converts the Tune domains as Tune itself does for a Tuner's param_space.
        searcher.set_search_properties(sweep.metric.name, sweep.metric.mode, search_space(sweep))
        return searcher
    raise SweepError(
        [
            f"{sweep.path}: `method: bayes` runs offline through a Ray Tune search algorithm, "
            "which needs optuna or hyperopt: `pip install optuna` (or `pip install hyperopt`), "
            "or use `method: grid` / `random`, or run online with WANDB_API_KEY set"
        ]
    )


class TrialSource:
    """Hands out trial parameters and hears back their metric.

    A planned source (grid, random) yields its list; a Bayesian source asks the searcher,
    seeded with the finished trials of an earlier run of the same sweep.
    """

    def __init__(self, sweep: Sweep, finished: Sequence[tuple[dict[str, Any], float]] = ()) -> None:
        self.sweep = sweep
        self._planned: Iterator[dict[str, Any]] | None = None
        self._searcher: Any = None
        self._left = 0
        self._ids: dict[int, str] = {}
        if sweep.method in ("grid", "random"):
            self.total = len(planned := planned_trials(sweep))
            self._planned = iter(planned)
        else:
            assert sweep.run_cap is not None
            self._searcher = bayes_searcher(sweep, seed_offset=len(finished))
            for params, value in finished:
                self._searcher.add_evaluated_point(params, value)
            self.total = sweep.run_cap
            self._left = max(0, sweep.run_cap - len(finished))
        self._n = 0

    @property
    def adaptive(self) -> bool:
        """True when the next trial depends on finished ones (wait before asking)."""
        return self._searcher is not None

    def next(self) -> dict[str, Any] | None:
        """The next trial's parameters, or None when the sweep has none left."""
        if self._planned is not None:
            return next(self._planned, None)
        if self._left <= 0:
            return None
        tid = f"t{self._n}"
        cfg = self._searcher.suggest(tid)
        if cfg is None:
            return None
        self._n += 1
        self._left -= 1
        params = {k: _plain(cfg[k]) for k in self.sweep.keys}
        self._ids[_ident(params)] = tid
        return params

    def complete(self, params: dict[str, Any], value: float | None) -> None:
        """Tell the searcher how a trial it suggested went."""
        if self._searcher is None:
            return
        tid = self._ids.pop(_ident(params), None)
        if tid is None:
            return
        result = None if value is None else {self.sweep.metric.name: value}
        self._searcher.on_trial_complete(tid, result=result, error=value is None)

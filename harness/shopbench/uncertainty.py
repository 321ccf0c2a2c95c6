"""Confidence intervals and paired comparisons of scores, from per-row units.

**Intervals** (:func:`intervals`): a stratified percentile bootstrap. Rows are resampled with
replacement within each task (the official aggregation weights tasks, not rows, so the
number of rows per task is fixed), each resample is scored by summing its rows' units and
re-aggregating (:mod:`harness.shopbench.units`; no metric runs again), and the task, group
and overall scores of each resample give the percentile interval at ``level`` and the
standard error (the replicates' standard deviation). Each task's replicates are spread
around its estimate by ``sqrt(n / (n - 1))`` first (an expanded percentile interval): the
bootstrap variance of a mean over n rows is ``(n - 1) / n`` of the unbiased one, which
makes plain percentile intervals too narrow at ShopBench's 4 to 10 rows a task (clipped to
what a resample can score). Vectorised: a task whose rows take
few distinct unit values draws multinomial counts of those values; any other draws
``resamples x n`` row indices in blocks; there is no Python loop over rows or resamples.
A percentile interval that misses the point estimate (possible for a micro F1 over a few
rows) is widened to include it.

**Paired comparison** (:func:`compare`): both prediction sets are scored on the same rows;
the bootstrap draws the same rows for A and B, so the interval of ``delta = B - A`` keeps the
pairing (rows both get right or both get wrong cancel). The two-sided p-value comes from a
paired sign-flip permutation test: under the null hypothesis that A and B are exchangeable
on every row, each row's A and B units are swapped with probability 1/2 (only rows where
they differ matter), and ``p = (1 + #{|delta*| >= |delta|}) / (1 + resamples)``. The
permutation test is used rather than a bootstrap p-value because it is exact under its null
for any number of rows (ShopBench has 4 to 10 rows a task; bootstrap tests are
anti-conservative that small), it needs no assumption about the metric's distribution, and
it gives ``p = 1`` for identical predictions. Accuracy tasks also get the exact McNemar test
on their discordant rows. Per task, the ids of the rows whose own score went up (better) or
down (worse) are listed.

Resampling is deterministic for a seed and does not depend on the order of the rows (each
task's rows are put in a canonical order, sorted by their units, and each task draws from
its own stream, seeded by the seed and the task name); swapping A and B gives the negated
delta and the mirrored interval exactly (the draws are made in an order that does not depend
on which set is called A).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.shopbench.errors import ScoringError
from harness.shopbench.units import MEAN, TaskUnits, Units, aggregate, combine, task_scores

DEFAULT_RESAMPLES = 10_000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
METHOD = "stratified percentile bootstrap (rows resampled within tasks); paired sign-flip test"

# Gathered elements per block of index draws (bounds memory: ~8 bytes each per column).
_BLOCK = 2_000_000
# Use multinomial counts of distinct rows when there are at most n / _DISTINCT of them.
_DISTINCT = 4
_TIE = 1e-12


# --------------------------------------------------------------------------- drawing


def _rng(seed: int, task: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.encode("utf-8")), stream])


def _uniform_ints(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``size`` integers in ``[0, n)``: 32 random bits each, scaled by multiply-shift
    (bias below n / 2**32 per value)."""
    raw = rng.bit_generator.random_raw((size + 1) // 2).view(np.uint32)[:size]
    out = np.multiply(raw, np.uint64(n), dtype=np.uint64)
    out >>= np.uint64(32)
    return out.astype(np.intp)


def _canonical(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``stats`` (sorted) and their counts."""
    cats, counts = np.unique(stats, axis=0, return_counts=True)
    return cats, counts


def _bootstrap_sums(stats: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(resamples, k)`` sums of the units of ``resamples`` bootstrap samples of the rows."""
    n, k = stats.shape
    if not np.all(np.isfinite(stats)):
        return np.full((resamples, k), np.nan)
    cats, counts = _canonical(stats)
    if len(cats) == 1:
        return np.broadcast_to(cats[0] * n, (resamples, k)).copy()
    if len(cats) <= n // _DISTINCT:
        draws = rng.multinomial(n, counts / n, size=resamples)
        return draws @ cats
    rows = np.repeat(cats, counts, axis=0)
    out = np.empty((resamples, k))
    block = max(1, _BLOCK // (n * k))
    for start in range(0, resamples, block):
        m = min(block, resamples - start)
        idx = _uniform_ints(rng, m * n, n).reshape(m, n)
        out[start : start + m] = np.take(rows, idx, axis=0).sum(axis=1)
    return out


def _flip_sums(
    x: np.ndarray, y: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sums of A's and B's units when each row's A and B are swapped with probability 1/2."""
    sx, sy = x.sum(axis=0), y.sum(axis=0)
    k = x.shape[1]
    changed = np.any(x != y, axis=1) | ~np.isfinite(x).all(axis=1) | ~np.isfinite(y).all(axis=1)
    if not changed.any():
        return np.broadcast_to(sx, (resamples, k)).copy(), np.broadcast_to(
            sy, (resamples, k)
        ).copy()
    cats, counts = _canonical(np.hstack([x[changed], y[changed]]))
    diff = cats[:, k:] - cats[:, :k]
    if len(cats) <= max(1, int(changed.sum()) // _DISTINCT):
        moved = rng.binomial(counts, 0.5, size=(resamples, len(cats))) @ diff
    else:
        rows = np.repeat(diff, counts, axis=0)
        m = rows.shape[0]
        moved = np.empty((resamples, k))
        block = max(1, _BLOCK // m)
        for start in range(0, resamples, block):
            b = min(block, resamples - start)
            raw = rng.bit_generator.random_raw((b * m + 63) // 64).view(np.uint8)
            bits = np.unpackbits(raw, count=b * m).reshape(b, m)
            moved[start : start + b] = bits @ rows
    return sx + moved, sy - moved


# --------------------------------------------------------------------------- summaries


def _percentile(reps: np.ndarray, level: float, point: float) -> tuple[float, float]:
    if not np.all(np.isfinite(reps)) or not math.isfinite(point):
        return math.nan, math.nan
    tail = (1 - level) / 2
    lo, hi = np.quantile(reps, [tail, 1 - tail])
    return float(min(lo, point)), float(max(hi, point))


def _stderr(reps: np.ndarray) -> float:
    if len(reps) < 2 or not np.all(np.isfinite(reps)):
        return math.nan
    if reps.min() == reps.max():
        return 0.0
    return float(np.std(reps, ddof=1))


def _p_value(null: np.ndarray, observed: float) -> float:
    if not math.isfinite(observed) or not np.all(np.isfinite(null)):
        return math.nan
    extreme = np.abs(null) >= abs(observed) - _TIE * max(1.0, abs(observed))
    return float((1 + int(extreme.sum())) / (1 + len(null)))


def mcnemar_p(better: int, worse: int) -> float:
    """Exact two-sided McNemar p-value of ``better`` vs ``worse`` discordant pairs.

    Returns:
        ``min(1, 2 * P(X <= min(better, worse)))`` for ``X ~ Binomial(better + worse, 1/2)``;
        1 when there is no discordant pair.
    """
    total = better + worse
    if total == 0:
        return 1.0
    low = min(better, worse)
    log_half = total * math.log(0.5)
    terms = [
        math.lgamma(total + 1) - math.lgamma(i + 1) - math.lgamma(total - i + 1) + log_half
        for i in range(low + 1)
    ]
    top = max(terms)
    tail = math.exp(top) * math.fsum(math.exp(t - top) for t in terms)
    return min(1.0, 2 * tail)


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ScoringError(f"resamples must be at least 1, got {resamples}")
    if not 0 < level < 1:
        raise ScoringError(f"level must be between 0 and 1, got {level}")


def _entry(point: float, reps: np.ndarray, level: float) -> dict[str, Any]:
    return {
        "score": point,
        "ci": list(_percentile(reps, level, point)),
        "stderr": _stderr(reps),
    }


# --------------------------------------------------------------------------- intervals


def _expand(task: TaskUnits, reps: np.ndarray) -> np.ndarray:
    """Replicates spread around the task's estimate by ``sqrt(n / (n - 1))``.

    The bootstrap variance of a mean over n rows is ``(n - 1) / n`` of the unbiased one, so
    plain percentile intervals are too narrow on small tasks (ShopBench: 4-10 rows); the
    expansion removes that bias. Expanded replicates are clipped to what a resample can
    score (the range of the row values; [0, 1] for micro F1).
    """
    if task.n < 2:
        return reps
    centre = task_scores(task.aggregate, task.stats.sum(axis=0), task.n)
    spread = centre + math.sqrt(task.n / (task.n - 1)) * (reps - centre)
    # Within what a resample can score: the range of the row values (a mean), [0, 1] (F1).
    if task.aggregate == MEAN:
        values = (
            task.stats[:, 0] if task.stats.shape[1] == 1 else task.stats[task.stats[:, 1] > 0, 0]
        )
        if len(values) == 0:
            return spread
        low, high = float(values.min()), float(values.max())
    else:
        low, high = 0.0, 1.0
    return np.clip(spread, low, high)


def task_replicates(units: Units, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap replicates of every task score: task -> ``(resamples,)``."""
    out = {}
    for name, t in units.tasks.items():
        sums = _bootstrap_sums(t.stats, resamples, _rng(seed, name, 0))
        out[name] = _expand(t, task_scores(t.aggregate, sums, t.n))
    return out


def intervals(
    units: Units,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """Bootstrap intervals of the task, group and overall scores.

    Args:
        units: The evaluation's units.
        resamples: Bootstrap resamples.
        seed: Seed of the draws.
        level: Confidence level of the percentile intervals.

    Returns:
        ``{"tasks": {name: {"score", "ci", "stderr"}}, "groups": {...}, "overall": {...},
        "resamples", "seed", "level", "method"}``.

    Raises:
        ScoringError: ``resamples`` below 1 or ``level`` outside (0, 1).
    """
    _check(resamples, level)
    point = aggregate(units)
    reps = task_replicates(units, resamples, seed)
    group_reps, overall_reps = combine(units, reps)
    return {
        "tasks": {n: _entry(point["tasks"][n], reps[n], level) for n in units.tasks},
        "groups": {g: _entry(point["groups"][g], r, level) for g, r in group_reps.items()},
        "overall": _entry(point["overall"], np.asarray(overall_reps), level),
        "resamples": resamples,
        "seed": seed,
        "level": level,
        "method": METHOD,
    }


# --------------------------------------------------------------------------- comparison


def check_same_rows(a: Units, b: Units) -> None:
    """Refuse two evaluations whose rows differ.

    Raises:
        ScoringError: Different tasks, metrics, row counts or row ids.
    """
    if list(a.tasks) != list(b.tasks):
        only = sorted(set(a.tasks) ^ set(b.tasks))
        raise ScoringError(
            "the two prediction sets are not scored on the same rows: tasks differ"
            + (f" ({', '.join(only)})" if only else " in order")
        )
    for name, ta in a.tasks.items():
        tb = b.tasks[name]
        if ta.n != tb.n or ta.ids != tb.ids or ta.aggregate != tb.aggregate:
            raise ScoringError(
                f"the two prediction sets are not scored on the same rows: task {name!r} "
                f"has {ta.n} rows ({ta.metric}) in A and {tb.n} ({tb.metric}) in B, or "
                "other row ids"
            )
        if ta.group != tb.group or ta.stats.shape[1] != tb.stats.shape[1]:
            raise ScoringError(
                f"the two prediction sets are not scored alike: task {name!r} differs in "
                "track/skill or units"
            )


def _key(units: Units) -> bytes:
    """An order of prediction sets that does not depend on the order of their rows: by the
    distinct rows and their counts, then (sets with the same counts, differing per row) by the
    rows in the order of their ids, so that exactly one of two different sets comes first."""
    parts = []
    for name, t in units.tasks.items():
        cats, counts = _canonical(t.stats)
        parts += [name.encode(), cats.tobytes(), counts.tobytes()]
    for name, t in units.tasks.items():
        order = sorted(range(len(t.ids)), key=lambda i: (t.ids[i], t.stats[i].tobytes()))
        parts += [name.encode(), t.stats[order].tobytes()]
    return b"\0".join(parts)


def _pair_entry(
    a: float, b: float, reps: np.ndarray, null: np.ndarray, level: float
) -> dict[str, Any]:
    delta = b - a
    return {
        "a": a,
        "b": b,
        "delta": delta,
        "ci": list(_percentile(reps, level, delta)),
        "stderr": _stderr(reps),
        "p_value": _p_value(null, delta),
    }


def _paired_task(
    x: TaskUnits, y: TaskUnits, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap replicates of X and Y, and their permutation-null replicates."""
    k = x.stats.shape[1]
    sums = _bootstrap_sums(np.hstack([x.stats, y.stats]), resamples, _rng(seed, x.name, 1))
    bx = _expand(x, task_scores(x.aggregate, sums[:, :k], x.n))
    by = _expand(y, task_scores(y.aggregate, sums[:, k:], y.n))
    fx, fy = _flip_sums(x.stats, y.stats, resamples, _rng(seed, x.name, 2))
    return bx, by, task_scores(x.aggregate, fx, x.n), task_scores(y.aggregate, fy, y.n)


def compare(
    a: Units,
    b: Units,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Any]:
    """Paired comparison of two evaluations of the same rows: ``delta = B - A``.

    Args:
        a: Units of A.
        b: Units of B (same tasks, rows and ids).
        resamples: Bootstrap resamples, and permutations for the p-values.
        seed: Seed of the draws.
        level: Confidence level.

    Returns:
        ``{"overall": {"a", "b", "delta", "ci", "stderr", "p_value"}, "tracks": {group:
        {...}}, "tasks": {task: {..., "n", "metric", "better", "worse"[, "mcnemar_p"]}},
        "resamples", "seed", "level", "method"}``.

    Raises:
        ScoringError: Rows that differ, ``resamples`` below 1 or ``level`` outside (0, 1).
    """
    _check(resamples, level)
    check_same_rows(a, b)
    swap = _key(a) > _key(b)
    x, y = (b, a) if swap else (a, b)
    boot_a: dict[str, np.ndarray] = {}
    boot_b: dict[str, np.ndarray] = {}
    null: dict[str, np.ndarray] = {}
    for name in a.tasks:
        bx, by, fx, fy = _paired_task(x.tasks[name], y.tasks[name], resamples, seed)
        (boot_a[name], boot_b[name]) = (by, bx) if swap else (bx, by)
        null[name] = (fx - fy) if swap else (fy - fx)
    pa, pb = aggregate(a), aggregate(b)
    delta_reps = {n: boot_b[n] - boot_a[n] for n in a.tasks}
    groups_d, overall_d = combine(a, delta_reps)
    groups_n, overall_n = combine(a, null)
    tasks: dict[str, Any] = {}
    for name, ta in a.tasks.items():
        tb = b.tasks[name]
        entry = _pair_entry(
            pa["tasks"][name], pb["tasks"][name], delta_reps[name], null[name], level
        )
        up = tb.row_scores > ta.row_scores
        down = tb.row_scores < ta.row_scores
        entry.update(
            n=ta.n,
            metric=ta.metric,
            better=[i for i, u in zip(ta.ids, up, strict=True) if u],
            worse=[i for i, d in zip(ta.ids, down, strict=True) if d],
        )
        if ta.metric == "accuracy":
            entry["mcnemar_p"] = mcnemar_p(int(up.sum()), int(down.sum()))
        tasks[name] = entry
    return {
        "overall": _pair_entry(
            pa["overall"], pb["overall"], np.asarray(overall_d), np.asarray(overall_n), level
        ),
        "tracks": {
            g: _pair_entry(pa["groups"][g], pb["groups"][g], groups_d[g], groups_n[g], level)
            for g in groups_d
        },
        "tasks": tasks,
        "resamples": resamples,
        "seed": seed,
        "level": level,
        "method": METHOD,
    }


def resolvable_difference(overall_stderr: float, level: float = DEFAULT_LEVEL) -> float:
    """The smallest overall difference between two independent runs with this run's
    per-task variance that a two-sided test at ``level`` resolves: ``z * sqrt(2) * stderr``.

    A paired comparison resolves smaller differences where the two runs agree on rows.
    """
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - (1 - level) / 2) * math.sqrt(2) * overall_stderr


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None (for strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [json_safe(v) for v in value]
    return value

"""Statistics of groups of runs: what a table of seeds can and cannot conclude.

Pure zone. scipy is imported inside the functions that need it (``import scipy.stats`` costs
about 0.3 s), so ``fgbench --help`` and ``runs list`` never pay for it.

Decisions (the README's "Statistics" section says the same to users):

* One group's numbers: n, mean, the sample standard deviation (n - 1 in the denominator), a 95 %
  confidence interval of the mean by Student's t with n - 1 degrees of freedom
  (``mean ± t(0.975, n-1) · sd / √n``, ``scipy.stats.t``), min and max. One run: n = 1, no sd,
  no interval. Equal values: sd 0 and an interval of zero width.
* A difference is always ``other − baseline``. It is **paired by seed** when both groups ran
  exactly the same set of seeds, each once, and at least two of them: the interval is the t
  interval of the mean of the per-seed differences (``scipy.stats.ttest_rel``). Otherwise it is
  **Welch's** interval of the difference of means (``scipy.stats.ttest_ind(equal_var=False)``),
  which needs at least two runs on each side. Below that there is a difference but no interval.
* Several comparisons against one baseline are adjusted with **Holm's** step-down method: sort
  the comparisons by their unadjusted p-value; the i-th (from 1) of m is tested at level
  α / (m − i + 1) until the first one that fails, and that one and all after it are tested at the
  failing step's level. Each interval is computed at its comparison's level
  (confidence 1 − α / k), so "the interval excludes zero" and "Holm rejects no difference" are
  the same statement. A comparison is **resolved** exactly then; otherwise it is **within noise**.
  With one comparison (m = 1) nothing is adjusted. Comparisons without an interval do not count
  in m.
* When every per-seed difference is the same (or both groups have no spread), the t statistic is
  undefined; the interval is then the single value, resolved when that value is not zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

CONFIDENCE = 0.95
"""Confidence of every interval fgbench prints (before Holm's adjustment)."""

Method = Literal["paired", "welch", "none"]

METHOD_TEXT = {
    "paired": "paired by seed",
    "welch": "Welch",
    "none": "no interval (a group of one run)",
}


@dataclass(frozen=True)
class Described:
    """One group's values of one number (e.g. test top-1 at the best epoch)."""

    n: int
    mean: float
    sd: float | None
    """sample standard deviation (n − 1); None for one value"""
    ci_low: float | None
    ci_high: float | None
    """the 95 % t interval of the mean; None for one value"""
    min: float
    max: float

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies inside the interval (None without an interval)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low <= value <= self.ci_high


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _sd(values: Sequence[float]) -> float:
    m = _mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> Described | None:
    """n, mean, sample sd, t interval of the mean, min and max of ``values`` (None when empty)."""
    vals = [float(v) for v in values]
    if not vals:
        return None
    n = len(vals)
    mean = _mean(vals)
    if n == 1:
        return Described(1, mean, None, None, None, vals[0], vals[0])
    sd = _sd(vals)
    if sd == 0:
        low = high = mean
    else:
        from scipy import stats as st  # type: ignore[import-untyped]

        low, high = (float(x) for x in st.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n)))
    return Described(n, mean, sd, low, high, min(vals), max(vals))


@dataclass(frozen=True)
class Difference:
    """``other − baseline`` for one number, with its interval."""

    diff: float
    """paired: the mean of the per-seed differences; Welch and none: the difference of the means"""
    method: Method
    n: int
    """paired: the number of seeds; otherwise the runs of both groups together"""
    p_value: float | None = None
    """two-sided p of "no difference", unadjusted"""
    confidence: float | None = None
    """the confidence the interval was computed at (below 0.95 never; above it after Holm)"""
    ci_low: float | None = None
    ci_high: float | None = None
    resolved: bool | None = None
    """the interval excludes zero (None without an interval)"""
    adjusted: int = 1
    """the k of the interval's level 1 − α/k (Holm); 1: not adjusted"""

    @property
    def verdict(self) -> str:
        if self.resolved is None:
            return "no interval"
        return "resolved" if self.resolved else "within noise"


@dataclass(frozen=True)
class _Test:
    diff: float
    method: Method
    n: int
    p: float | None
    interval: Callable[[float], tuple[float, float]] | None
    """the interval at a given confidence; None: too few runs for one"""


def _test(baseline: Sequence[tuple[int, float]], other: Sequence[tuple[int, float]]) -> _Test:
    base = list(baseline)
    b_vals = [v for _s, v in base]
    o_vals = [v for _s, v in other]
    b_seeds = [s for s, _v in base]
    o_seeds = [s for s, _v in other]
    paired = (len(set(b_seeds)) == len(b_seeds) == len(o_seeds) == len(set(o_seeds)) >= 2
              and set(b_seeds) == set(o_seeds))
    if paired:
        b_by = dict(base)
        diffs = [v - b_by[s] for s, v in other]
        d = _mean(diffs)
        if _sd(diffs) == 0:
            return _Test(d, "paired", len(diffs), 0.0 if d != 0 else 1.0, lambda conf: (d, d))
        from scipy import stats as st  # type: ignore[import-untyped]

        o_sorted = [v for _s, v in sorted(other)]
        b_sorted = [v for _s, v in sorted(base)]
        res = st.ttest_rel(o_sorted, b_sorted)

        def paired_ci(conf: float) -> tuple[float, float]:
            ci = res.confidence_interval(confidence_level=conf)
            return float(ci.low), float(ci.high)

        return _Test(d, "paired", len(diffs), float(res.pvalue), paired_ci)
    if not b_vals or not o_vals:
        raise ValueError("a difference needs at least one value on each side")
    d = _mean(o_vals) - _mean(b_vals)
    if len(b_vals) < 2 or len(o_vals) < 2:
        return _Test(d, "none", len(b_vals) + len(o_vals), None, None)
    if _sd(b_vals) == 0 and _sd(o_vals) == 0:
        return _Test(d, "welch", len(b_vals) + len(o_vals), 0.0 if d != 0 else 1.0, lambda conf: (d, d))
    from scipy import stats as st  # type: ignore[import-untyped]

    res = st.ttest_ind(o_vals, b_vals, equal_var=False)

    def welch_ci(conf: float) -> tuple[float, float]:
        ci = res.confidence_interval(confidence_level=conf)
        return float(ci.low), float(ci.high)

    return _Test(d, "welch", len(b_vals) + len(o_vals), float(res.pvalue), welch_ci)


def difference(baseline: Sequence[tuple[int, float]], other: Sequence[tuple[int, float]],
               confidence: float = CONFIDENCE) -> Difference:
    """One comparison, unadjusted. Both sides are ``(seed, value)`` pairs, one per run."""
    return compare_to_baseline(baseline, [other], confidence)[0]


def holm_levels(p_values: Sequence[float | None], alpha: float = 1 - CONFIDENCE) -> list[int]:
    """Holm's step-down divisors: the k of each comparison's level α/k, in input order (1 for a
    comparison without a p-value, which does not count in m). Ties keep the input order."""
    ranked = sorted(((p, i) for i, p in enumerate(p_values) if p is not None), key=lambda x: (x[0], x[1]))
    m = len(ranked)
    out = [1] * len(p_values)
    stop: int | None = None
    for rank, (p, i) in enumerate(ranked):
        if stop is None and not p < alpha / (m - rank):
            stop = rank  # Holm stops here: this and every larger p is tested at this step's level
        out[i] = m - (rank if stop is None else stop)
    return out


def compare_to_baseline(baseline: Sequence[tuple[int, float]], others: Sequence[Sequence[tuple[int, float]]],
                        confidence: float = CONFIDENCE) -> list[Difference]:
    """Every other group against the baseline, Holm-adjusted across the comparisons that have an
    interval. ``confidence`` is the family's level: α = 1 − confidence."""
    tests = [_test(baseline, other) for other in others]
    alpha = 1 - confidence
    ks = holm_levels([t.p if t.interval is not None else None for t in tests], alpha)
    out = []
    for t, k in zip(tests, ks):
        if t.interval is None:
            out.append(Difference(t.diff, t.method, t.n))
            continue
        level = 1 - alpha / k
        low, high = t.interval(level)
        out.append(Difference(t.diff, t.method, t.n, t.p, level, low, high,
                              resolved=not (low <= 0 <= high), adjusted=k))
    return out


def adjustment_text(m: int) -> str:
    """The line a table prints under its differences."""
    if m <= 1:
        return "95 % interval of the difference (one comparison: not adjusted)"
    return (f"95 % intervals of the differences, Holm-adjusted across {m} comparisons "
            "(each at the level Holm's step-down test gives it)")

"""fgbench.stats against values worked out in the test: a hand table of t quantiles and
arithmetic done here, scipy called here on known inputs, and Holm's adjusted p-values written out
by their textbook formula."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgbench import stats

# Student t quantiles t(0.975, df) from a printed table (NIST/SEMATECH e-Handbook 1.3.6.7.2)
T975 = {2: 4.302653, 3: 3.182446, 4: 2.776445}


def test_describe_five_values_by_hand() -> None:
    d = stats.describe([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (d.n, d.mean, d.min, d.max) == (5, 3.0, 1.0, 5.0)
    assert d.sd == pytest.approx(math.sqrt(2.5))  # sum of squares 10 over n - 1 = 4
    half = T975[4] * math.sqrt(2.5) / math.sqrt(5)  # 2.776445 * 0.7071068 = 1.963243
    assert half == pytest.approx(1.963243, abs=1e-6)
    assert d.ci_low == pytest.approx(3 - 1.963243, abs=1e-5)
    assert d.ci_high == pytest.approx(3 + 1.963243, abs=1e-5)
    assert d.contains(4.9) and not d.contains(4.97)


def test_describe_three_accuracies_by_hand() -> None:
    # 60.74, 61.20, 60.50: mean 60.8133.., deviations -0.0733, 0.3867, -0.3133
    d = stats.describe([60.74, 61.20, 60.50])
    mean = (60.74 + 61.20 + 60.50) / 3
    sd = math.sqrt(((60.74 - mean) ** 2 + (61.20 - mean) ** 2 + (60.50 - mean) ** 2) / 2)
    assert sd == pytest.approx(0.355715, abs=1e-6)
    assert d.mean == pytest.approx(60.813333, abs=1e-6)
    assert d.sd == pytest.approx(sd)
    assert d.ci_high - d.mean == pytest.approx(T975[2] * sd / math.sqrt(3), abs=1e-5)


def test_describe_one_run_has_no_interval_and_no_sd() -> None:
    d = stats.describe([71.5])
    assert (d.n, d.mean, d.sd, d.ci_low, d.ci_high, d.min, d.max) == (1, 71.5, None, None, None, 71.5, 71.5)
    assert d.contains(71.5) is None
    assert stats.describe([]) is None


def test_describe_equal_values_zero_width() -> None:
    d = stats.describe([50.0, 50.0, 50.0])
    assert (d.sd, d.ci_low, d.ci_high) == (0.0, 50.0, 50.0)


def test_paired_difference_by_hand() -> None:
    base = [(0, 70.0), (1, 71.0), (2, 72.5)]
    other = [(2, 73.0), (0, 71.0), (1, 72.5)]  # order does not matter: pairs are by seed
    d = stats.difference(base, other)
    # per-seed differences 1.0, 1.5, 0.5: mean 1.0, sd 0.5, se 0.5/sqrt(3)
    half = T975[2] * 0.5 / math.sqrt(3)
    assert half == pytest.approx(1.242069, abs=1e-6)
    assert d.method == "paired" and d.n == 3 and d.diff == pytest.approx(1.0)
    assert d.ci_low == pytest.approx(1.0 - 1.242069, abs=1e-5)
    assert d.ci_high == pytest.approx(1.0 + 1.242069, abs=1e-5)
    assert d.resolved is False and d.verdict == "within noise"
    assert d.adjusted == 1 and d.confidence == pytest.approx(0.95)


def test_paired_difference_resolved_where_welch_is_not() -> None:
    # the seeds move both groups together: paired, the +1 is resolved; as unpaired groups it is not
    base = [(0, 60.0), (1, 64.0), (2, 68.0), (3, 72.0)]
    other = [(0, 61.0), (1, 65.1), (2, 68.9), (3, 73.0)]
    d = stats.difference(base, other)
    diffs = [1.0, 1.1, 0.9, 1.0]
    sd = math.sqrt(sum((x - 1.0) ** 2 for x in diffs) / 3)
    assert d.method == "paired" and d.resolved is True
    assert d.ci_low == pytest.approx(1.0 - T975[3] * sd / 2, abs=1e-5)
    welch = stats.difference(base, [(s + 10, v) for s, v in other])  # other seeds: Welch
    assert welch.method == "welch" and welch.resolved is False


def test_welch_difference_by_its_formula() -> None:
    from scipy.stats import t

    a = [70.1, 71.3, 69.8, 70.6]          # baseline, seeds 0-3
    b = [72.0, 73.5, 71.2]                # other, seeds 0-2: not the same seeds, so Welch
    d = stats.difference(list(enumerate(a)), list(enumerate(b)))
    ma, mb = sum(a) / 4, sum(b) / 3
    va = sum((x - ma) ** 2 for x in a) / 3
    vb = sum((x - mb) ** 2 for x in b) / 2
    se = math.sqrt(va / 4 + vb / 3)
    df = (va / 4 + vb / 3) ** 2 / ((va / 4) ** 2 / 3 + (vb / 3) ** 2 / 2)  # Welch-Satterthwaite
    q = t.ppf(0.975, df)
    assert d.method == "welch" and d.n == 7
    assert d.diff == pytest.approx(mb - ma)
    assert d.ci_low == pytest.approx(mb - ma - q * se, rel=1e-9)
    assert d.ci_high == pytest.approx(mb - ma + q * se, rel=1e-9)
    assert mb - ma - q * se < 0 and d.resolved is False  # +1.78 but df ~ 3.6: the interval holds zero


def test_a_repeated_seed_is_not_paired() -> None:
    d = stats.difference([(0, 1.0), (0, 2.0), (1, 3.0)], [(0, 2.0), (1, 3.0), (1, 4.0)])
    assert d.method == "welch"


def test_single_runs_have_a_difference_but_no_interval() -> None:
    d = stats.difference([(0, 70.0)], [(0, 71.25)])
    assert d.method == "none" and d.diff == pytest.approx(1.25)
    assert (d.ci_low, d.ci_high, d.resolved, d.verdict) == (None, None, None, "no interval")


def test_holm_levels_hand_cases() -> None:
    # alpha 0.05, m = 3: 0.01 < 0.05/3 rejected; 0.03 is not < 0.05/2: stop, it and 0.04 at /2
    assert stats.holm_levels([0.01, 0.04, 0.03]) == [3, 2, 2]
    # 0.001 < 0.0167, 0.02 < 0.025, 0.2 not < 0.05
    assert stats.holm_levels([0.02, 0.001, 0.2]) == [2, 3, 1]
    # the first step fails: everything at /2 (0.04 would pass at /1, but Holm has stopped)
    assert stats.holm_levels([0.03, 0.04]) == [2, 2]
    assert stats.holm_levels([0.03, None]) == [1, 1]


def test_holm_intervals_are_wider_at_the_adjusted_level() -> None:
    from scipy.stats import t

    base = [(0, 70.0), (1, 71.0), (2, 72.5)]
    a = [(0, 71.0), (1, 72.5), (2, 73.0)]      # diffs 1.0, 1.5, 0.5
    b = [(0, 75.0), (1, 76.1), (2, 77.4)]      # diffs 5.0, 5.1, 4.9: the smaller p
    da, db = stats.compare_to_baseline(base, [a, b])
    assert (db.adjusted, da.adjusted) == (2, 1)  # b is tested first at 0.05/2, then a at 0.05/1
    sd_b = math.sqrt((0.0 + 0.01 + 0.01) / 2)
    assert db.ci_high - db.diff == pytest.approx(t.ppf(1 - 0.025 / 2, 2) * sd_b / math.sqrt(3), rel=1e-9)
    assert db.confidence == pytest.approx(0.975) and db.resolved is True
    assert da.ci_high - da.diff == pytest.approx(T975[2] * 0.5 / math.sqrt(3), abs=1e-5)


def _holm_adjusted(ps: list[float]) -> list[float]:
    """Holm's adjusted p-values by the textbook formula: p~(i) = max_{j<=i} min(1, (m-j+1) p(j))."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


values = st.lists(st.floats(min_value=40, max_value=80, allow_nan=False, allow_subnormal=False), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(base=values, others=st.lists(values, min_size=1, max_size=4))
def test_resolved_is_exactly_holms_decision(base: list[float], others: list[list[float]]) -> None:
    from scipy.stats import ttest_rel

    base_s = list(enumerate(base))
    others_s = [list(enumerate(o)) for o in others]
    diffs = stats.compare_to_baseline(base_s, others_s)
    ps = []
    for o in others:
        d = [x - y for x, y in zip(o, base)]
        if max(d) == min(d):  # no spread: the documented rule, p 0 for a nonzero constant, else 1
            ps.append(0.0 if d[0] != 0 else 1.0)
        else:
            ps.append(float(ttest_rel(o, base).pvalue))
    adjusted = _holm_adjusted(ps)
    for i, p_adj in enumerate(adjusted):
        if abs(p_adj - 0.05) > 1e-9:  # exactly at the boundary, rounding decides
            assert diffs[i].resolved is (p_adj < 0.05), (ps, adjusted)
        assert diffs[i].ci_low <= diffs[i].diff <= diffs[i].ci_high


def test_scipy_is_not_imported_by_the_module() -> None:
    import subprocess
    import sys

    code = "import sys, fgbench.stats, fgbench.groups; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_adjustment_text_names_holm() -> None:
    assert "Holm" in stats.adjustment_text(3) and "3 comparisons" in stats.adjustment_text(3)
    assert "not adjusted" in stats.adjustment_text(1)

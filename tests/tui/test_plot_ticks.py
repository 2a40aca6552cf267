"""Y tick labels of the TUI's plots stay evenly spaced at every height (plotext alone drops a
middle one on small charts: 2.50, 1.83, 0.83)."""

from __future__ import annotations

import re

import plotext
import pytest

from fgbench.tui.plots import PLOT_FRAME_ROWS, MetricPlot, Line, even_ticks

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _labels(canvas: str) -> list[tuple[int, float, int]]:
    """(row, value, decimals shown) of every y label of a plotext canvas."""
    out = []
    for row, line in enumerate(ANSI.sub("", canvas).splitlines()):
        head = line.split("┤")[0].strip() if "┤" in line else ""
        if head:
            out.append((row, float(head), len(head.partition(".")[2])))
    return out


def _evenly_spaced(labels: list[tuple[int, float, int]]) -> bool:
    """Same number of rows between labels, and the same value step up to the labels' rounding."""
    rows = {b[0] - a[0] for a, b in zip(labels, labels[1:])}
    steps = [a[1] - b[1] for a, b in zip(labels, labels[1:])]
    rounding = max(10.0 ** -d for _r, _v, d in labels)
    return len(rows) == 1 and max(steps) - min(steps) <= rounding * 1.01


@pytest.mark.parametrize("height", range(6, 17))
@pytest.mark.parametrize("lo,hi", [(0.5, 2.5), (0.0, 100.0), (31.7, 79.2)])
def test_plotext_with_our_ticks_shows_evenly_spaced_labels(height, lo, hi):
    plt = plotext
    plt.clear_figure()
    plt.plotsize(40, height)
    xs = list(range(101))
    plt.plot(xs, [hi - (hi - lo) * x / 100 for x in xs], marker="braille")
    plt.ylim(lo, hi)
    plt.yticks(*even_ticks(lo, hi, height - PLOT_FRAME_ROWS))
    labels = _labels(plt.build())
    assert len(labels) >= 2 and _evenly_spaced(labels), labels
    assert labels[0][1] == round(hi, labels[0][2])  # the top label is the top of the data


def test_plotext_alone_is_uneven_on_a_small_chart():
    """The case the function exists for (if plotext fixes it, even_ticks can go)."""
    plt = plotext
    plt.clear_figure()
    plt.plotsize(40, 8)
    xs = list(range(101))
    plt.plot(xs, [2.5 - 2 * x / 100 for x in xs], marker="braille")
    assert not _evenly_spaced(_labels(plt.build()))


async def test_the_monitor_plot_keeps_even_labels_when_resized():
    from textual.app import App

    class One(App):
        def compose(self):
            yield MetricPlot("loss", id="p")

    app = One()
    async with app.run_test(size=(50, 10)) as pilot:
        plot = app.query_one(MetricPlot)
        await pilot.pause()
        plot.show([Line(list(range(50)), [2.5 - 2 * x / 49 for x in range(50)], (255, 0, 0), "loss")], xlabel="step")
        for size in ((50, 10), (60, 13), (40, 9)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            inner = plot.plot
            canvas = inner.plt.build()
            assert _evenly_spaced(_labels(canvas)), (size, _labels(canvas))

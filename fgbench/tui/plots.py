"""Plot widgets: a legend line over a textual-plotext plot.

Decisions and trade-offs:

* The legend is a line of coloured text above the plot, not plotext's in-plot legend box, which
  covers data in a 40x10 plot. The same colours are given to plotext as RGB triples; Textual
  maps them down for 256-colour terminals.
* plotext costs about 40 microseconds per plotted point and rebuilds the whole canvas on every
  render, so callers pass already-decimated series (a few hundred points, see
  :class:`fgbench.tui.monitor.Decimator`), :class:`MetricPlot` averages them further down to
  two points per column (what braille can show) and redraws only when its data changed (the
  monitor also limits redraws to a few per second).
* textual-plotext (and plotext, 50 ms) is imported when the first plot is composed, not with this
  module: the run list and the colours need this module before the first paint.
* Braille markers give 2x4 dots per cell, the best resolution a terminal offers; they render in
  tmux, screen and every UTF-8 terminal.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

RGB = tuple[int, int, int]

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies) plus two more.
PALETTE: tuple[RGB, ...] = (
    (230, 159, 0),    # orange
    (86, 180, 233),   # sky blue
    (0, 158, 115),    # bluish green
    (240, 228, 66),   # yellow
    (204, 121, 167),  # reddish purple
    (213, 94, 0),     # vermillion
    (0, 114, 178),    # blue
    (153, 153, 153),  # grey
    (255, 255, 255),  # white
    (148, 103, 189),  # purple
)

SERIES_COLOURS: dict[str, RGB] = {
    "loss": (120, 120, 120),
    "loss_smooth": PALETTE[0],
    "train_top1": PALETTE[7],
    "val_top1": PALETTE[1],
    "test_top1": PALETTE[2],
    "ema_val_top1": PALETTE[4],
    "ema_test_top1": PALETTE[3],
    "lr": PALETTE[5],
    "images_per_s": PALETTE[6],
}

SERIES_LABELS: dict[str, str] = {
    "loss": "raw",
    "loss_smooth": "smoothed",
    "train_top1": "train",
    "val_top1": "val",
    "test_top1": "test",
    "ema_val_top1": "EMA val",
    "ema_test_top1": "EMA test",
    "lr": "lr",
    "images_per_s": "images/s",
}


def rgb_style(rgb: RGB) -> str:
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


@dataclass
class Line:
    xs: list[float]
    ys: list[float]
    colour: RGB
    label: str


def reduce_points(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """Average consecutive points into at most ``limit`` buckets (input order is kept)."""
    n = len(xs)
    if n <= limit:
        return xs, ys
    out_x, out_y = [], []
    for b in range(limit):
        lo, hi = n * b // limit, n * (b + 1) // limit
        if hi > lo:
            k = hi - lo
            out_x.append(sum(xs[lo:hi]) / k)
            out_y.append(sum(ys[lo:hi]) / k)
    return out_x, out_y


def even_ticks(lo: float, hi: float, rows: int, max_labels: int = 5) -> tuple[list[float], list[str]]:
    """Y tick values and labels that land on whole rows, every k-th row from the top, for a plot
    of ``rows`` data rows spanning ``lo``..``hi``. plotext's own ticks do not land on rows, and on a
    small chart it drops the one that collides, leaving unevenly spaced labels (2.50, 1.83, 0.83)."""
    if rows < 2 or not hi > lo:
        return [], []
    step_rows = max(1, math.ceil((rows - 1) / (max_labels - 1)))
    values = [hi - (hi - lo) * i / (rows - 1) for i in range(0, rows, step_rows)]
    step = (hi - lo) * step_rows / (rows - 1)
    decimals = max(0, min(6, 1 - math.floor(math.log10(step))))
    return values, [f"{v:.{decimals}f}" for v in values]


PLOT_FRAME_ROWS = 3
"""Rows of a plotext chart that are not data: the top frame, the x axis and its labels."""


def legend_text(title: str, lines: list[Line], extra: str = "") -> Text:
    text = Text()
    text.append(title, style="bold")
    for line in lines:
        text.append("  ━ ", style=rgb_style(line.colour))
        text.append(line.label)
    if extra:
        text.append(f"  {extra}", style="dim")
    return text


class ColourBook:
    """Stable colours for runs: a run keeps the colour it was first given in this session, and
    prefers the colour its name hashes to, so the same run usually looks the same across
    sessions too. Runs shown together never share a colour while the palette lasts."""

    def __init__(self, palette: tuple[RGB, ...] = PALETTE):
        self.palette = palette
        self.assigned: dict[str, int] = {}

    def colour(self, key: str, in_use: set[int] | None = None) -> RGB:
        if key not in self.assigned:
            taken = set(in_use or ())
            start = zlib.crc32(key.encode()) % len(self.palette)
            for i in range(len(self.palette)):
                idx = (start + i) % len(self.palette)
                if idx not in taken:
                    break
            else:
                idx = start
            self.assigned[key] = idx
        return self.palette[self.assigned[key]]

    def colours(self, keys: list[str]) -> dict[str, RGB]:
        used = {self.assigned[k] for k in keys if k in self.assigned}
        out = {}
        for k in keys:
            if k not in self.assigned:
                self.colour(k, used)
                used.add(self.assigned[k])
            out[k] = self.palette[self.assigned[k]]
        return out


class MetricPlot(Vertical):
    """A titled legend line and a plotext plot of a few lines."""

    DEFAULT_CSS = """
    MetricPlot { height: 1fr; width: 1fr; }
    MetricPlot > .legend { height: 1; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; padding: 0 1 0 0; }
    MetricPlot > PlotextPlot { height: 1fr; width: 1fr; }
    """

    def __init__(self, title: str, **kwargs):
        super().__init__(**kwargs)
        self.title = title
        self._key: object = None
        self._yrange: tuple[float, float] | None = None

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Static(Text(self.title, style="bold"), classes="legend")
        yield PlotextPlot()

    @property
    def plot(self):
        return self.query_one("PlotextPlot")

    def show(self, lines: list[Line], *, xlabel: str, log_y: bool = False, extra: str = "",
             ylim: tuple[float, float] | None = None) -> bool:
        """Replace the plotted lines. Returns False (and draws nothing) if nothing changed."""
        key = (tuple((tuple(ln.xs[-3:]), len(ln.xs), tuple(ln.ys[-3:]), ln.colour, ln.label) for ln in lines),
               xlabel, log_y, extra, ylim)
        if key == self._key:
            return False
        self._key = key
        extra = "  ".join(p for p in (extra, f"x: {xlabel}") if p)
        self.query_one(".legend", Static).update(legend_text(self.title, [ln for ln in lines if ln.xs], extra))
        plt = self.plot.plt
        plt.clear_data()
        drawn = 0
        # A braille cell holds 2 dots across: more points than 2 per column cannot be seen, and
        # plotext's line drawing costs per point, so average down to the plot's resolution.
        limit = max(40, 2 * (self.plot.size.width or 100))
        for ln in lines:
            xs, ys = reduce_points(ln.xs, ln.ys, limit)
            if log_y:
                pairs = [(x, y) for x, y in zip(xs, ys) if y > 0]
                xs, ys = [p[0] for p in pairs], [math.log10(p[1]) for p in pairs]
            if not xs:
                continue
            plt.plot(xs, ys, marker="braille", color=ln.colour)
            drawn += 1
        plotted = [math.log10(y) if log_y else y for ln in lines for y in ln.ys if y > 0 or not log_y]
        self._yrange = (ylim if ylim is not None else (min(plotted), max(plotted))) if drawn and plotted else None
        self._set_ticks()
        self.plot.refresh()
        return True

    def _set_ticks(self) -> None:
        """The y range and evenly spaced labels for the plot's current height (:func:`even_ticks`);
        plotext keeps ticks across ``clear_data``, so they are always set (none without data)."""
        plt = self.plot.plt
        yrange = self._yrange
        if yrange is None:
            plt.ylim(None, None)
            plt.yticks([])
            return
        lo, hi = yrange
        if not hi > lo:  # a flat line: a little room around it
            pad = abs(lo) * 0.05 or 0.5
            lo, hi = lo - pad, hi + pad
        plt.ylim(lo, hi)
        plt.yticks(*even_ticks(lo, hi, (self.plot.size.height or 0) - PLOT_FRAME_ROWS))

    def on_resize(self) -> None:
        self._set_ticks()

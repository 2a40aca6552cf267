"""Plot widgets: a legend line over a textual-plotext plot.

Decisions and trade-offs:

* The legend is a line of coloured text above the plot, not plotext's in-plot legend box, which
  covers data in a 40x10 plot. The same colours are given to plotext as RGB triples; Textual
  maps them down for 256-colour terminals. Where one line is too narrow (:func:`legend_rows`)
  the legend takes a second row in place of the plot's top frame line, so the data keeps its rows.
* plotext costs about 40 microseconds per plotted point and rebuilds the whole canvas on every
  render, so callers pass already-decimated series (a few hundred points, see
  :class:`fgbench.runmodel.Decimator`), :class:`MetricPlot` averages them further down to
  two points per column (what braille can show) and redraws only when its data changed (the
  monitor also limits redraws to a few per second).
* textual-plotext (and plotext, 50 ms) is imported when the first plot is composed, not with this
  module: the run list and the colours need this module before the first paint.
* Tick labels are ours (:func:`even_ticks`, :func:`even_xticks`): y labels on whole rows, x labels
  as many as fit, so plotext never drops a colliding middle label and leaves an uneven axis.
* Braille markers give 2x4 dots per cell, the best resolution a terminal offers; they render in
  tmux, screen and every UTF-8 terminal. Where several runs share a chart (Compare), each run also
  has its own marker character (``MARKERS``), shown beside its name everywhere it appears, so
  the runs stay apart on a monochrome terminal and in a 3-row chart where colours blur.
* A smoothed series is drawn over its raw values: the raw line in a dimmed copy of the colour,
  the smoothed one in the colour itself (as TensorBoard and W&B do), so smoothing never hides
  what was measured.
* The log scale is plotext's own (``yscale("log")``): tick labels stay the real values.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text

from fgbench.rundir.events import SERIES
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

#: one marker per palette entry: a run's marker follows its colour (ColourBook.index)
MARKERS = ("•", "x", "+", "o", "*", "#", "@", "%", "=", "~")

SERIES_COLOURS: dict[str, RGB] = {
    "loss": PALETTE[0],
    "train_top1": PALETTE[7],
    "val_top1": PALETTE[1],
    "test_top1": PALETTE[2],
    "ema_val_top1": PALETTE[4],
    "ema_test_top1": PALETTE[3],
    "lr": PALETTE[5],
    "images_per_s": PALETTE[6],
}

SERIES_LABELS: dict[str, str] = {
    "loss": "loss",
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


def dimmed(rgb: RGB, factor: float = 0.45) -> RGB:
    """The colour of a raw series drawn under its smoothed one."""
    return (int(rgb[0] * factor), int(rgb[1] * factor), int(rgb[2] * factor))


#: what each series of the metrics stream is called on a chart: the event schema's labels
CHART_TITLES: dict[str, str] = {name: s.label for name, s in SERIES.items()}


@dataclass
class Line:
    xs: list[float]
    ys: list[float]
    colour: RGB
    label: str
    marker: str = "braille"
    legend: bool = True
    """False for a raw series under its smoothed copy: one legend entry per run"""


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
    return values, [_fixed(v, decimals) for v in values]


def _fixed(v: float, decimals: int) -> str:
    """``v`` with ``decimals`` decimals, never a negative zero: a value a hair below zero (the
    chart's padding under a learning rate that ends at 0) reads "0.000", not "-0.000"."""
    text = f"{v:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _tick_text(v: float, step: float) -> str:
    if step >= 1 and abs(v - round(v)) < 1e-9 * max(1.0, abs(v)):
        return str(int(round(v)))
    decimals = max(0, min(6, 1 - math.floor(math.log10(step)))) if step > 0 else 2
    return _fixed(v, decimals)


def even_xticks(x0: float, x1: float, cols: int, max_labels: int = 5) -> tuple[list[float], list[str]]:
    """X tick values and labels for ``cols`` data columns: as many evenly spaced labels (at most
    ``max_labels``) as fit without touching, so plotext never has to drop one (it drops a middle
    label on a narrow chart: 0 105 315)."""
    if not x1 > x0 or cols < 2:
        return [], []
    # steps and epochs: whole-number labels, each exactly its tick, where rounding a tick to a whole
    # number moves it by less than half a column (a unit is at most one column wide)
    whole = float(x0).is_integer() and float(x1).is_integer() and x1 - x0 >= cols - 1
    for n in range(max_labels, 1, -1):  # the most labels that fit
        step = (x1 - x0) / (n - 1)
        values = [x0 + step * i for i in range(n)]
        if whole and step >= 1:
            values = [float(round(v)) for v in values]
        labels = [_tick_text(v, step) for v in values]
        # room between labels, and for the half of the last one that overhangs the right edge
        if (cols - 1) / (n - 1) >= max(len(t) for t in labels) + 2 + len(labels[-1]) // 2 and len(set(labels)) == n:
            return values, labels
    return [], []  # not even two labels fit: none rather than a misleading one


PLOT_FRAME_ROWS = 3
"""Rows of a plotext chart that are not data: the top frame, the x axis and its labels."""

LEGEND_ROWS = 2
"""The most rows a chart's legend takes (:func:`legend_rows`); its second row replaces the top frame."""


def legend_rows(title: str, lines: list[Line], extra: str = "", width: int | None = None, note: str = "",
                max_rows: int = 1) -> list[Text]:
    """The legend: the title, each line's marker and label, ``extra`` (a reading that belongs on
    screen: the "now" value, the smoothing) and ``note`` (the x axis, which the tick labels and
    the footer also tell). The first form that fits ``width``:

    1. one row, spaced; 2. one row, compact (single spaces, the marker against its label);
    3. without the note; 4. a chart of one series without its entry (the title names it);
    5. up to ``max_rows`` rows, compact, the entries wrapped whole (with the note, then without).

    Otherwise the compact row without the note, cut with an ellipsis. So every series keeps its
    entry and a reading its value in a 24-column chart (the monitor at 80 columns with its system
    panel open), where the one row used to lose the top-1 chart's EMA entries and the "now"."""
    shown = [ln for ln in lines if ln.legend]
    Piece = list[tuple[str, str]]  # (text, style) fragments; a gap before a piece takes its first style

    def pieces(compact: bool, entries: list[Line], with_note: bool) -> list[Piece]:
        out: list[Piece] = [[(title, "bold")]]
        for line in entries:
            mark = "━" if line.marker == "braille" else line.marker
            out.append([(f"{mark}{'' if compact else ' '}", rgb_style(line.colour)), (line.label, "")])
        tail = "  ".join(p for p in (extra, note if with_note else "") if p)
        if tail:
            out.append([(tail, "dim")])
        return out

    def pack(parts: list[Piece], gap: str, rows: int) -> list[Text] | None:
        """``parts`` in at most ``rows`` rows of ``width``, each part whole; None where they do not fit."""
        out = [Text(no_wrap=True, overflow="ellipsis")]
        for part in parts:
            size = sum(cell_len(t) for t, _s in part)
            row = out[-1]
            if row.cell_len and width is not None and row.cell_len + len(gap) + size > width:
                if len(out) == rows:
                    return None
                row = Text(no_wrap=True, overflow="ellipsis")
                out.append(row)
            for i, (text, style) in enumerate(part):
                row.append(f"{gap}{text}" if i == 0 and row.cell_len else text, style=style)
        if width is not None and any(row.cell_len > width for row in out):
            return None
        return out

    tries = [("  ", pieces(False, shown, True), 1), (" ", pieces(True, shown, True), 1),
             (" ", pieces(True, shown, False), 1)]
    if len(shown) == 1:
        tries.append((" ", pieces(True, [], False), 1))
    if max_rows > 1:
        tries += [(" ", pieces(True, shown, True), max_rows), (" ", pieces(True, shown, False), max_rows)]
    for gap, parts, rows in tries:
        fitted = pack(parts, gap, rows)
        if fitted is not None:
            return fitted
    return [_one_row(pieces(True, shown, False))]


def _one_row(parts: list[list[tuple[str, str]]]) -> Text:
    """``parts`` in one row however wide (the Static cuts it with an ellipsis)."""
    row = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        for i, (text, style) in enumerate(part):
            row.append(f" {text}" if i == 0 and row.cell_len else text, style=style)
    return row


class ColourBook:
    """Stable colours for runs: a run keeps the colour it was first given in this session, and
    prefers the colour its name hashes to, so the same run usually looks the same across
    sessions too. Runs shown together never share a colour while the palette lasts."""

    def __init__(self, palette: tuple[RGB, ...] = PALETTE):
        self.palette = palette
        self.assigned: dict[str, int] = {}

    def marker(self, key: str) -> str:
        """The run's marker character (assign its colour first)."""
        if key not in self.assigned:
            self.colour(key)
        return MARKERS[self.assigned[key] % len(MARKERS)]

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
        self._shown: tuple[list[Line], dict] | None = None  # show()'s arguments, drawn again on a resize
        self.lines: list[Line] = []
        self._yrange: tuple[float, float] | None = None
        self._log_y = False
        self._ylim: tuple[float, float] | None = None
        self._ylabels: list[str] = []
        self._xrange: tuple[float, float] | None = None

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Static(Text(self.title, style="bold"), classes="legend")
        yield PlotextPlot()

    @property
    def plot(self):
        return self.query_one("PlotextPlot")

    def show(self, lines: list[Line], *, xlabel: str, log_y: bool = False, extra: str = "",
             ylim: tuple[float, float] | None = None, xlim: tuple[float, float] | None = None,
             cursor_x: float | None = None) -> bool:
        """Replace the plotted lines. Returns False (and draws nothing) if nothing changed.
        ``xlim``: a shared x range (Compare aligns its charts); ``cursor_x``: a vertical line."""
        key = (tuple((tuple(ln.xs[-3:]), len(ln.xs), tuple(ln.ys[-3:]), ln.colour, ln.label, ln.marker)
                     for ln in lines), xlabel, log_y, extra, ylim, xlim, cursor_x, self.plot.size)
        if key == self._key:
            return False
        self._key = key
        self._shown = (lines, dict(xlabel=xlabel, log_y=log_y, extra=extra, ylim=ylim, xlim=xlim, cursor_x=cursor_x))
        self.lines = lines
        """what is drawn (tests and the cursor read it)"""
        rows = legend_rows(self.title, [ln for ln in lines if ln.xs], extra, width=max(10, (self.size.width or 80) - 1),
                           note=f"x: {xlabel}", max_rows=LEGEND_ROWS)
        legend = self.query_one(".legend", Static)
        text = rows[0]
        for row in rows[1:]:
            text.append("\n")
            text.append_text(row)
        legend.update(text)
        legend.styles.height = len(rows)
        plt = self.plot.plt
        # a second legend row takes the place of the plot's top frame line: the data keeps its rows
        plt.xaxes(True, len(rows) == 1)
        plt.clear_data()
        drawn = 0
        # A braille cell holds 2 dots across: more points than 2 per column cannot be seen, and
        # plotext's line drawing costs per point, so average down to the plot's resolution.
        limit = max(40, 2 * (self.plot.size.width or 100))
        for ln in lines:
            xs, ys = reduce_points(ln.xs, ln.ys, limit if ln.marker == "braille" else limit // 2)
            if log_y:  # a log axis has no place for zero or below
                pairs = [(x, y) for x, y in zip(xs, ys) if y > 0]
                xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            if not xs:
                continue
            plt.plot(xs, ys, marker=ln.marker, color=ln.colour)
            drawn += 1
        plt.yscale("log" if log_y and drawn else "linear")
        plotted = [y for ln in lines for y in ln.ys if y > 0 or not log_y]
        self._yrange = (ylim if ylim is not None else (min(plotted), max(plotted))) if drawn and plotted else None
        self._log_y, self._ylim = log_y, ylim
        self._set_ticks()
        if xlim is not None and drawn and xlim[1] > xlim[0]:
            plt.xlim(*xlim)
        else:
            plt.xlim(None, None)
        xs_all = [x for ln in lines if ln.ys for x in ln.xs]
        self._xrange = (xlim if xlim is not None and xlim[1] > xlim[0] else (min(xs_all), max(xs_all))) \
            if drawn and xs_all else None
        self._set_xticks()
        if cursor_x is not None and drawn:
            plt.vline(cursor_x, "white")
        self.plot.refresh()
        return True

    def _data_rows(self) -> int:
        """The plot's rows of data: its height less the legend and the frame. Worked out from this
        widget's height, which a legend growing to two rows does not change (the plot below it
        gives up the row, and its top frame line with it), so the ticks set now fit the layout
        that follows."""
        if self.size.height:
            return self.size.height - 1 - PLOT_FRAME_ROWS
        return (self.plot.size.height or 0) - PLOT_FRAME_ROWS

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
        rows = self._data_rows()
        if self._log_y:  # plotext's log axis: rows are even in log10(y), ticks given in y
            plt.ylim(*(self._ylim or (None, None)))
            if lo > 0 and hi > lo:
                values, _ = even_ticks(math.log10(lo), math.log10(hi), rows)
                self._ylabels = [f"{10 ** v:.2g}" for v in values]
                plt.yticks([10 ** v for v in values], self._ylabels)
            else:
                plt.yticks([])
            return
        if not hi > lo:  # a flat line: a little room around it
            pad = abs(lo) * 0.05 or 0.5
            lo, hi = lo - pad, hi + pad
        plt.ylim(lo, hi)
        values, self._ylabels = even_ticks(lo, hi, rows)
        plt.yticks(values, self._ylabels)

    def _set_xticks(self) -> None:
        """Evenly spaced x labels that fit the plot's current width (:func:`even_xticks`)."""
        plt = self.plot.plt
        if self._xrange is None:
            plt.xticks([])
            return
        x0, x1 = self._xrange
        # the y labels and the frame take the left columns; the widest of our y labels tells how many
        ywidth = max((len(t) for t in self._ylabels), default=4)
        values, labels = even_xticks(x0, x1, (self.plot.size.width or 0) - ywidth - 2)
        if values:
            plt.xlim(x0, x1)
        plt.xticks(values, labels)

    def on_resize(self) -> None:
        # the ticks, the legend's width and the points kept per column are all for a size: draw
        # the same lines again for the new one (the plot may already have drawn itself at its new
        # size with what was worked out for the old, and would keep that frame)
        if self._shown is not None:
            lines, args = self._shown
            self.show(lines, **args)
        else:
            self._set_ticks()
            self._set_xticks()

"""Understand one run: per-class accuracy, the most confused class pairs, and the test images
behind a confusion (``a`` in the monitor).

Decisions and trade-offs:

* The numbers are those of ``fgbench runs show`` (:func:`fgbench.report.per_class_accuracy`,
  :func:`fgbench.report.confused_pairs`) over ``confusion.json``: the selected model at its best
  epoch on the test split. The images of a pair come from ``predictions.json`` (the same model and
  epoch, see :data:`fgbench.rundir.layout.PREDICTIONS_FILE`); the header names the model and the epoch.
* Pictures are drawn by textual-image (:mod:`fgbench.tui.images`): Sixel or the Kitty protocol
  where the terminal has them, coloured half blocks elsewhere. A page holds as many images as fit
  across the screen; ``[``/``]`` page through the rest of the pair. Images are decoded only for the
  page shown.
* The files are read once when the screen opens (the run has finished: they do not change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from fgbench import report
from fgbench.data.images import CorruptImageError, open_picture
from fgbench.rundir import layout
from fgbench.rundir.confusion import has_confusion, read_confusion
from fgbench.tui import images
from fgbench.textsafe import safe
from fgbench.tui.widgets.fitted_table import FittedTable

PAIRS = 30
"""confused pairs listed (largest counts first)"""
TILE_WIDTH = 18
"""columns per picture (its caption is cut to this width)"""

SORTS = ("worst", "best", "name")


def bar(pct: float | None, width: int = 10) -> str:
    """A bar of ``width`` cells with eighth-cell resolution (95 % and 99 % look different)."""
    if pct is None:
        return ""
    eighths = round(max(0.0, min(100.0, pct)) / 100 * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")


def _well_formed_predictions(pred: Any) -> bool:
    """``predictions.json`` has the types the trainer writes (class names, lists of labels,
    predictions, indices and file names), so a forged one cannot crash the screen."""
    if not isinstance(pred, dict) or pred.get("label") is None:
        return False
    names = pred.get("class_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return False
    if any(pred.get(k) is not None and not isinstance(pred[k], list) for k in ("index", "file", "label", "predicted")):
        return False
    return all(f is None or isinstance(f, str) for f in pred.get("file") or [])


class AnalysisScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the monitor"),
        Binding("o", "sort", "Sort classes", tooltip="Sort the classes: worst first, best first, by name"),
        Binding("left_square_bracket", "page(-1)", "Images ←", tooltip="Previous images of the pair"),
        Binding("right_square_bracket", "page(1)", "Images →", tooltip="Next images of the pair"),
    ]

    DEFAULT_CSS = """
    AnalysisScreen #analysis-header { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    AnalysisScreen #analysis-top { height: 1fr; min-height: 6; }
    AnalysisScreen #analysis-classes { width: 1fr; min-width: 30; }
    AnalysisScreen #analysis-pairs { width: 1fr; border-left: vkey $primary 40%; }
    AnalysisScreen .analysis-title { height: 1; text-style: bold; color: $accent; }
    AnalysisScreen #pair-list { height: 1fr; border: none; padding: 0; text-wrap: nowrap; text-overflow: ellipsis; }
    AnalysisScreen #class-table { height: 1fr; }
    AnalysisScreen #analysis-images { height: 13; border-top: hkey $primary 40%; }
    AnalysisScreen #images-title { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    AnalysisScreen #image-strip { height: 10; }
    AnalysisScreen .image-tile { width: 18; height: 10; margin: 0 1 0 0; }
    AnalysisScreen .image-tile > .picture { width: 18; height: 9; }
    AnalysisScreen .image-tile > .caption { height: 1; text-wrap: nowrap; text-overflow: ellipsis; color: $text-muted; }
    AnalysisScreen #images-note { height: auto; color: $text-muted; }
    """

    def __init__(self, path: Path):
        super().__init__(classes="analysis-screen")
        self.path = Path(path)
        self.confusion: dict[str, Any] | None = None
        self.predictions: dict[str, Any] | None = None
        self.pairs: list[tuple[str, str, int, float]] = []
        self.sort = "worst"
        self.pair: tuple[str, str] | None = None
        self.page = 0
        self.shown: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="analysis-header")
        with Horizontal(id="analysis-top"):
            with Vertical(id="analysis-classes"):
                yield Static("per-class accuracy", classes="analysis-title", id="classes-title")
                yield FittedTable(id="class-table", cursor_type="row", zebra_stripes=False)
            with Vertical(id="analysis-pairs"):
                yield Static("most confused (true → predicted)", classes="analysis-title")
                yield OptionList(id="pair-list")
        with Vertical(id="analysis-images"):
            yield Static("", id="images-title")
            yield Horizontal(id="image-strip")
            yield Static("", id="images-note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        conf = read_confusion(self.path)  # a large one's cells come from confusion.npy
        pred = layout.read_json(self.path / layout.PREDICTIONS_FILE)
        self.confusion = conf if has_confusion(conf) else None
        self.predictions = pred if _well_formed_predictions(pred) else None  # forged: as if absent
        self.query_one("#analysis-header", Static).update(self._header())
        self._fill_classes()
        lst = self.query_one("#pair-list", OptionList)
        if self.confusion is not None:
            self.pairs = report.confused_pairs(self.confusion, PAIRS)
            lst.add_options([Option(self._pair_text(p), id=str(i)) for i, p in enumerate(self.pairs)])
            if not self.pairs:
                lst.add_option(Option("no confusions: every test image was right", disabled=True))
        if self.pairs:
            lst.highlighted = 0
            self._show_pair(0)
            lst.focus()
        else:
            self._show_note()

    def _header(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(safe(self.path.name), style="bold")
        c = self.confusion
        if c is None:
            text.append(f"  no {layout.CONFUSION_FILE}: it is written when the run finishes", style="yellow")
            return text
        acc = report.per_class_accuracy(c)
        right = sum(a[1] for a in acc)
        total = sum(a[2] for a in acc)
        text.append(safe(f"  {c.get('split', 'test')} split · {c.get('model', '?')} model · epoch {c.get('epoch', '?')}"))
        text.append(f" · {len(acc)} classes · {right}/{total} right", style="dim")
        if total:
            text.append(f" ({100.0 * right / total:.2f}%)", style="dim")
        return text

    def _fill_classes(self) -> None:
        table = self.query_one("#class-table", FittedTable)
        columns = [("class", "class"), ("top-1 %", "top-1 %"), ("right/all", "right/all"), ("bar", "")]
        if self.confusion is None:
            table.set_rows(columns, [])
            return
        acc = report.per_class_accuracy(self.confusion)
        if self.sort == "worst":
            acc.sort(key=lambda a: (a[3] if a[3] is not None else 101.0, a[0]))
        elif self.sort == "best":
            acc.sort(key=lambda a: (-(a[3] if a[3] is not None else -1.0), a[0]))
        else:
            acc.sort(key=lambda a: a[0])
        # class names are folder names of the data set: shown safe (an OSC 52 in one wrote the
        # clipboard through this table)
        table.set_rows(columns, [(name, [Text(safe(name)), Text("-" if pct is None else f"{pct:.2f}", justify="right"),
                                         Text(f"{correct}/{total}", justify="right"), bar(pct)])
                                 for name, correct, total, pct in acc])
        self.query_one("#classes-title", Static).update(f"per-class accuracy ({self.sort} first)"
                                                        if self.sort != "name" else "per-class accuracy (by name)")

    @staticmethod
    def _pair_text(p: tuple[str, str, int, float]) -> Text:
        t, q, n, share = p
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{n:>4} ", style="bold")
        text.append(f"{safe(t)} → {safe(q)}")
        text.append(f"  {share:.0f}%", style="dim")
        return text

    @on(OptionList.OptionHighlighted, "#pair-list")
    def _pair_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None:
            self._show_pair(int(event.option.id))

    def _show_pair(self, i: int) -> None:
        t, q, n, _share = self.pairs[i]
        if self.pair != (t, q):
            self.pair, self.page = (t, q), 0
        self._draw_images()

    def _per_page(self) -> int:
        width = self.size.width or 80
        return max(1, width // (TILE_WIDTH + 1))

    def _draw_images(self) -> None:
        strip = self.query_one("#image-strip", Horizontal)
        strip.remove_children()
        self.shown = []
        if self.pair is None:
            return
        t, q = self.pair
        title = self.query_one("#images-title", Static)
        if self.predictions is None:
            title.update(Text(f"{safe(t)} → {safe(q)}", style="bold"))
            self._show_note("no predictions.json in this run (runs from before fgbench wrote it): the images "
                            "cannot be shown")
            return
        found = report.misclassified(self.predictions, t, q)
        per = self._per_page()
        pages = max(1, -(-len(found) // per))
        self.page = max(0, min(self.page, pages - 1))
        page = found[self.page * per:(self.page + 1) * per]
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{safe(t)} → {safe(q)}", style="bold")
        text.append(f": {len(found)} test images of {safe(t)} predicted as {safe(q)}")
        if pages > 1:
            text.append(f"  (page {self.page + 1}/{pages}, [ ] to page)", style="dim")
        title.update(text)
        cls = images.widget_class()
        tiles = []
        missing = 0
        # a file name is shown as text (never markup), made safe: image names set the title once;
        # cut in the middle to the tile, so the numbers that tell a class's images apart stay (cut
        # at the end, four captions read "cool_two_dots_000…" at 80 columns)
        names = [safe(Path(item["file"]).name) if item.get("file") else safe(f"#{item.get('index')}") for item in page]
        for item, name in zip(page, report.cut_apart(names, TILE_WIDTH)):
            f = item.get("file")
            caption = Static(Text(name), classes="caption")
            if f and cls is not None and Path(f).is_file():
                try:
                    picture = cls(open_picture(f), classes="picture")
                except CorruptImageError as err:  # shown as a placeholder: never a crash of the TUI
                    picture = Static(Text(f"(cannot show: {err.reason})", style="dim"), classes="picture")
                tiles.append(Vertical(picture, caption, classes="image-tile"))
            else:
                missing += f is not None and not Path(f).is_file()
                tiles.append(Vertical(Static(Text("(no picture)", style="dim"), classes="picture"), caption,
                                      classes="image-tile"))
        self.shown = page
        strip.mount_all(tiles)
        note = ""
        if page and all(item.get("file") is None for item in page):
            note = ("this dataset keeps its images in arrays (no files): the test-set indices are shown")
        elif missing:
            note = f"{missing} image files are no longer where the run read them"
        elif cls is None and page:
            note = "pictures need textual-image (pip install textual-image) and FGBENCH_IMAGES not off"
        self._show_note(note)

    def _show_note(self, note: str = "") -> None:
        self.query_one("#images-note", Static).update(Text(note, style="dim"))

    def on_resize(self, event) -> None:
        if self.pair is not None and len(self.shown) != self._per_page():
            self._draw_images()

    def action_page(self, direction: int) -> None:
        if self.pair is not None:
            self.page += direction
            self._draw_images()

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._fill_classes()

    def action_back(self) -> None:
        self.app.pop_screen()

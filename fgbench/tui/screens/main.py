"""The main screen: the four panes as tabs, with the footer of keys."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widgets import Footer, Label, Static, TabbedContent, TabPane

from fgbench.tui.recipe_files import listing
from fgbench.tui.widgets.compare_pane import ComparePane
from fgbench.tui.widgets.datasets_pane import DatasetsPane
from fgbench.tui.widgets.deferred import Deferred
from fgbench.tui.widgets.runs_pane import RunsPane

PANES = ("datasets", "recipes", "runs", "compare")


class RecipesPreview(Horizontal):
    """What the Recipes pane shows while the recipe schema loads: the recipe list, as text."""

    def __init__(self, dirs: list[tuple[str, Path]], current: Path | None):
        super().__init__()
        self.dirs = dirs
        self.current = current

    def compose(self) -> ComposeResult:
        text = Text(no_wrap=True, overflow="ellipsis")
        for label, path in listing(self.dirs, self.current):
            text.append(label + "\n", style="bold" if path is None else "")
        with Vertical(classes="recipe-side"):
            yield Label("Recipes", classes="pane-title")
            yield Static(text, classes="recipe-preview-list")
        with Vertical(classes="recipe-main"):
            yield Static(Text("loading the recipe schema...", style="dim"), classes="recipe-preview-title")


class MainScreen(Screen):
    # No automatic focus: it would pick the first focusable widget of whichever pane mounted
    # first, and focusing inside a hidden tab switches to that tab. on_mount focuses the pane.
    AUTO_FOCUS = ""
    BINDINGS = [Binding("ctrl+r", "app.run_recipe", "Run",
                        tooltip="Run the current recipe (as edited, saved or not) in its own process")]

    def __init__(self, *, recipes_dirs: list[tuple[str, Path]], initial_recipe: Path | None,
                 data_root: Path | None, initial_pane: str = "recipes"):
        super().__init__(id="main")
        self.recipes_dirs = recipes_dirs
        self.initial_recipe = initial_recipe
        self.data_root = data_root
        self.initial_pane = initial_pane
        self._opened = False
        self._asked_pane: str | None = None
        self._focus_on_load: str | None = None
        """a pane whose focus waits for its Deferred widget (:meth:`on_deferred_loaded`)"""

    def compose(self) -> ComposeResult:
        # Only the pane shown first is mounted before the first paint; the others are mounted
        # right after it (Lazy), which keeps the first paint fast on a slow machine. The Recipes
        # pane needs the recipe schema, the slowest import of all: it is always Deferred (imported
        # in a thread after the first paint), with the recipe list as its placeholder.
        panes = {
            "datasets": ("1 Datasets", lambda: DatasetsPane(self.data_root, id="datasets-pane")),
            "runs": ("3 Runs", lambda: RunsPane(id="runs-pane")),
            "compare": ("4 Compare", lambda: ComparePane(id="compare-pane")),
        }
        with TabbedContent(initial=self.initial_pane, id="panes"):
            for pane_id, title in (("datasets", "1 Datasets"), ("recipes", "2 Recipes"), ("runs", "3 Runs"),
                                   ("compare", "4 Compare")):
                with TabPane(title, id=pane_id):
                    if pane_id == "recipes":
                        yield Deferred("fgbench.tui.widgets.recipes_pane", self._recipes_pane,
                                       RecipesPreview(self.recipes_dirs, self.initial_recipe))
                    else:
                        make = panes[pane_id][1]
                        yield make() if pane_id == self.initial_pane else Lazy(make())
        yield Footer(compact=True)

    def _recipes_pane(self, module):
        return module.RecipesPane(self.recipes_dirs, self.initial_recipe, id="recipes-pane")

    def on_mount(self) -> None:
        self.call_after_refresh(self._open)

    def _open(self) -> None:
        """The first refresh is done: the tabs have taken their first pane. A pane asked for
        before that (the run watcher's first report, on a loaded machine) is shown now; until now
        the tabs' own activation of the first pane, still on its way, would have undone it."""
        self._opened = True
        pane, self._asked_pane = self._asked_pane, None
        if pane is not None and pane != self.initial_pane:
            self.show_pane(pane)
        else:
            self.focus_pane(self.initial_pane)

    def on_resize(self, event) -> None:
        # hints beside the form fields only where there is room; the help line always has them
        self.set_class(event.size.width < 100, "-narrow")

    def show_pane(self, pane: str) -> None:
        if not self._opened:
            self._asked_pane = pane
            return
        tabs = self.query_one("#panes", TabbedContent)
        # Unfocus first: a focused widget that its pane's hiding blurs hands the focus to a sibling
        # (Textual's rule), and a sibling in the hidden pane would switch straight back to it.
        self.set_focus(None)
        tabs.active = pane
        self.call_after_refresh(self.focus_pane, pane)

    def focus_pane(self, pane: str) -> None:
        """Focus the main widget of ``pane`` if it is still the pane shown. A request made for a
        pane that has since been left is dropped: focusing a widget of a hidden pane shows that
        pane again (the opening's focus of Recipes, retried while the pane mounts, once took the
        user back from the Runs pane that two live runs had opened)."""
        try:
            active = self.query_one("#panes", TabbedContent).active
            if active and active != pane:
                return
        except NoMatches:
            return
        target = {
            "datasets": "#datasets-table",
            "recipes": "#recipe-list",
            "runs": "#runs-table",
            "compare": "#compare-list",
        }[pane]
        try:
            self.query_one(target).focus()
        except NoMatches:
            if any(not d.loaded for d in self.query(f"#{pane} Deferred").results(Deferred)):
                # the Recipes pane waits on its import: focus it when it is mounted. Asking again
                # after every refresh spins the event loop while the load awaits: today only its
                # mount (the import blocks the loop; 4 asks at start-up), but a test that holds the
                # load open never let the app go idle, and nor would an import moved to a thread
                self._focus_on_load = pane
            else:  # still being mounted (Lazy): try again after the next refresh
                self.call_after_refresh(self.focus_pane, pane)

    def on_deferred_loaded(self, event: Deferred.Loaded) -> None:
        pane, self._focus_on_load = self._focus_on_load, None
        if pane is not None:
            self.focus_pane(pane)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id
        if pane in PANES and (self.focused is None or event.pane not in self.focused.ancestors):
            self.call_after_refresh(self.focus_pane, pane)

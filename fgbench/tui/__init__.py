"""The terminal workbench (``fgbench`` with no arguments): datasets, recipes, runs, comparisons.

Layout of the package (entry point: :func:`fgbench.tui.app.make_app` / :func:`fgbench.tui.app.main`)::

    app.py, app.tcss      the App: shared state (run store, launcher, colours) and cross-pane actions
    screens/              main (the four panes as tabs), monitor (one run, live), help, dialogs
    widgets/              one module per pane, the generated recipe form, the run view
    form.py               schema -> form: field kinds, text <-> values, error paths (no textual)
    monitor.py            run directory -> plot series, progress, status (no textual)
    plots.py              plotext plots with a legend line
    launcher.py           start / stop / resume trainer processes (no textual)
    messages.py           messages between workers and widgets

Import zone: textual, plotext and the pure modules only. The TUI never imports torch or
torchvision (about 3 s and 650 MB before the first paint); training always runs in a separate
``fgbench run`` process that the TUI watches through the run directory, which is also what
makes re-attaching after a restart or a dropped SSH connection free.
"""

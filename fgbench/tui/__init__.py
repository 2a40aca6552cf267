"""The terminal workbench (``fgbench`` with no arguments): datasets, recipes, runs, comparisons.

Layout of the package (entry point: :func:`fgbench.tui.app.make_app` / :func:`fgbench.tui.app.main`)::

    app.py, app.tcss      the App: shared state (run store, launcher, colours) and cross-pane actions
    screens/              main (the four panes as tabs), monitor (one run, live), help
    widgets/              one module per pane, the generated recipe form, the run view
    dialogs.py            modal prompts that panes open (beside widgets/ and screens/, so neither
                          of those packages imports the other both ways)
    form.py               schema -> form: field kinds, text <-> values, error paths (no textual)
    monitor.py            run directory -> plot series, progress, status (no textual)
    plots.py              plotext plots with a legend line
    launcher.py           the TUI's side of fgbench.rundir.launcher (no textual)
    messages.py           messages between workers and widgets

Import zone: textual, plotext and the pure modules only. The TUI never imports torch or
torchvision (about 3 s and 650 MB before the first paint); training always runs in a separate
``fgbench run`` process that the TUI watches through the run directory, which is also what
makes re-attaching after a restart or a dropped SSH connection free.
"""

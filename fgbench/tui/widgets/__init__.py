"""Widgets: one module per pane, plus the generated recipe form and the run monitor view."""

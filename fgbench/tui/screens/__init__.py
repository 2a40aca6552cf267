"""Screens: the main workbench (tabs), the run monitor, help and small dialogs."""

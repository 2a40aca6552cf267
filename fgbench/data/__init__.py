"""Datasets: the catalog and download engine (pure zone), transforms and loaders (engine zone)."""

"""Recipe files in the recipe directories: what the Recipes pane lists (no schema needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RecipeFile:
    path: Path
    origin: str

    @property
    def name(self) -> str:
        return self.path.stem


def discover(dirs: list[tuple[str, Path]]) -> list[RecipeFile]:
    out = []
    for origin, d in dirs:
        if d.is_dir():
            out.extend(RecipeFile(p, origin) for p in sorted(d.glob("*.toml")) if p.is_file())
    return out

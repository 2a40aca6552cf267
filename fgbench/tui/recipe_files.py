"""Recipe files in the recipe directories: what the Recipes pane lists (no schema needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgbench.textsafe import safe


@dataclass(frozen=True)
class RecipeFile:
    path: Path
    origin: str

    @property
    def name(self) -> str:
        return self.path.stem


def discover(dirs: list[tuple[str, Path]]) -> list[RecipeFile]:
    out: list[RecipeFile] = []
    for origin, d in dirs:
        if d.is_dir():
            out.extend(RecipeFile(p, origin) for p in sorted(d.glob("*.toml")) if p.is_file())
    return out


def listing(dirs: list[tuple[str, Path]], current: Path | None) -> list[tuple[str, Path | None]]:
    """The recipe list as shown: an origin header (path None) before each directory's recipes, and
    each recipe's name marked with ``●`` when it is the open one. A name is a file name, which may
    hold anything but ``/``: it is made safe here, once, for the list and its preview."""
    out: list[tuple[str, Path | None]] = []
    last_origin = None
    for rf in discover(dirs):
        if rf.origin != last_origin:
            out.append((rf.origin, None))
            last_origin = rf.origin
        out.append((("● " if rf.path == current else "  ") + safe(rf.name), rf.path))
    return out

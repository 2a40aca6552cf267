"""`fgbench data list|info|download|verify|import|remove` (pure zone at import time).

The catalog and the download engine are stdlib-only, so only ``verify --deep`` (which decodes
images with PIL through ``fgbench.data.fast``) pulls in the engine zone, inside its handler.

Exit codes: 0 done; 1 the work failed (a download or verification failed, corrupt images found);
2 bad input (unknown dataset, a file that is not the expected one, a dataset that cannot be
downloaded automatically); 130 interrupted (a partial download is kept and resumes next time).

On a terminal, progress is one redrawn line per step with a bar, speed and ETA; otherwise one
line per step, so logs stay readable.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from typing import TextIO

from fgbench.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from fgbench.formats import fmt_clock_floor
from fgbench.textsafe import safe, safe_lines


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list, download, verify, import and remove datasets")
    ds = p.add_subparsers(dest="data_command", metavar="ACTION")

    ls = ds.add_parser("list", help="the dataset catalog with each dataset's status")
    ls.set_defaults(handler=cmd_list)

    info = ds.add_parser("info", help="everything known about one dataset")
    info.add_argument("name", metavar="NAME")
    _root_arg(info)
    info.set_defaults(handler=cmd_info)

    dl = ds.add_parser("download", help="download, verify, extract and prepare datasets (resumes)")
    dl.add_argument("names", nargs="+", metavar="NAME")
    _root_arg(dl)
    dl.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds (default 30)")
    dl.add_argument("--retries", type=int, default=4, metavar="N", help="retries per URL without progress (default 4)")
    dl.set_defaults(handler=cmd_download)

    vf = ds.add_parser("verify", help="check counts and files; --deep also decodes every image")
    vf.add_argument("name", metavar="NAME")
    vf.add_argument("--deep", action="store_true", help="decode every image and list the corrupt ones")
    _root_arg(vf)
    vf.set_defaults(handler=cmd_verify)

    im = ds.add_parser("import", help="use an archive or folder you downloaded yourself")
    im.add_argument("name", metavar="NAME")
    im.add_argument("path", metavar="PATH", help="a catalog archive, a folder holding them, or an extracted folder")
    _root_arg(im)
    im.set_defaults(handler=cmd_import)

    rm = ds.add_parser("remove", help="delete a downloaded dataset (folder --root DIR: only fgbench's caches of DIR)")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    _root_arg(rm)
    rm.set_defaults(handler=cmd_remove)


def _root_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", metavar="DIR", help="the dataset's own folder (default: <data dir>/NAME)")


# ---------------------------------------------------------------------------- progress


class ProgressPrinter:
    """Renders ``fgbench.data.progress.Progress`` on stderr."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.current: tuple[str, str] | None = None
        self.open_line = False

    def __call__(self, p) -> None:
        from fgbench.data.catalog import format_bytes

        key = (p.stage, p.message)
        if not p.unit:
            amount = speed = ""
        elif p.unit == "B":
            amount = format_bytes(p.done_bytes) + (f"/{format_bytes(p.total_bytes)}" if p.total_bytes else "")
            speed = f"{format_bytes(p.speed)}/s" if p.speed else ""
        else:
            amount = f"{p.done_bytes}" + (f"/{p.total_bytes}" if p.total_bytes else "") + f" {p.unit}"
            speed = f"{p.speed:.0f} {p.unit}/s" if p.speed else ""
        if not self.tty:
            if key != self.current:
                self.current = key
                total = f" ({format_bytes(p.total_bytes)})" if p.unit == "B" and p.total_bytes else ""
                print(f"{p.stage}: {safe(p.message)}{total}", file=self.stream, flush=True)
            return
        if key != self.current and self.open_line:
            self.stream.write("\n")
        self.current = key
        width = shutil.get_terminal_size((100, 20)).columns
        frac = p.fraction
        bar = ""
        if frac is not None:
            n = 24
            filled = int(frac * n)
            bar = "[" + "#" * filled + "." * (n - filled) + f"] {frac * 100:5.1f}%"
        eta = f"ETA {fmt_clock_floor(p.eta_s)}" if p.eta_s is not None else ""
        tail = "  ".join(x for x in (bar, amount, speed, eta) if x)
        head = f"{p.stage:8s} {safe(p.message)}"  # a message may name a file from an archive
        room = max(10, width - 1 - len(tail) - 2)
        if len(head) > room:  # shorten the message, never the numbers
            head = head[: room - 3] + "..."
        line = f"{head}  {tail}" if tail else head
        self.stream.write("\r" + line[: width - 1].ljust(width - 1))
        self.stream.flush()
        self.open_line = True

    def close(self) -> None:
        if self.tty and self.open_line:
            self.stream.write("\n")
            self.stream.flush()
        self.open_line = False
        self.current = None


# ----------------------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace) -> int:
    from fgbench.data import catalog

    rows = [("NAME", "CLASSES", "TRAIN/TEST", "SIZE", "STATUS", "PATH")]
    for e in catalog.entries():
        images = f"{e.train_images}/{e.test_images}" if e.images is not None else "-"
        status = catalog.status_text(e.name)  # the same words as the TUI's Datasets pane
        where = "(data.root)" if e.name == "folder" else safe(catalog.location(e.name))  # FGBENCH_DATA, settings
        rows.append((e.name, "-" if e.num_classes is None else str(e.num_classes), images, catalog.size_text(e), status, where))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lead = sum(widths) + 2 * len(widths)
    width = _terminal_width()
    footer = None
    if width is not None and lead + max(len(r[-1]) for r in rows) > width:
        # Too wide for the terminal: the paths under the datasets directory are named relative
        # to it, said once below (whole), and what is still too long is cut in the middle.
        from fgbench import paths
        from fgbench.report import cut_middle

        base = safe(paths.datasets_dir())
        prefix = base.rstrip("/") + "/"
        rows = [r[:-1] + (r[-1][len(prefix):] if r[-1].startswith(prefix) else r[-1],) for r in rows]
        rows = [r[:-1] + (cut_middle(r[-1], max(8, width - lead)),) for r in rows]
        footer = f"PATH is under {base}"  # whole, even if it wraps: it is the one place it is said
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if footer:
        print(footer)
    return EXIT_OK


def _terminal_width() -> int | None:
    """The width the table must fit: the terminal's (``COLUMNS`` wins); None to a pipe or file
    without ``COLUMNS`` (then nothing is cut), as ``fgbench runs list`` does."""
    from fgbench.cli import runs

    return runs._terminal_width()


def cmd_info(args: argparse.Namespace) -> int:
    from fgbench.data import catalog

    e = catalog.get(args.name)
    loc = catalog.location(e.name, args.root)
    status = catalog.status(e.name, args.root)
    lines = [
        f"{e.name}: {e.title}",
        f"  classes      {e.num_classes if e.num_classes is not None else '-'}",
        f"  images       {e.train_images if e.train_images is not None else '-'} train / "
        f"{e.test_images if e.test_images is not None else '-'} test",
        f"  download     {catalog.size_text(e)}",
        f"  licence      {e.licence}",
    ]
    if e.homepage:
        lines.append(f"  homepage     {e.homepage}")
    if e.mean is not None:
        lines.append(f"  mean / std   {e.mean} / {e.std}")
    for s in e.sources:
        check = f"md5 {s.md5}" if s.md5 else "no checksum (verified by image counts)"
        size = f", {s.size} bytes" if s.size is not None else ""
        lines.append(f"  source       {s.url}  ({check}{size})")
        lines.extend(f"    or         {alt}" for alt in s.alternates)
    if e.sources and not e.checksummed:
        lines.append("  checksum     none published: the dataset is verified by its image and class counts")
    if not e.auto_download and e.name not in ("folder", "synthetic"):
        lines.append(f"  get it       {catalog.how_to_get(e)}")
    from fgbench import settings

    mirror = settings.mirror_for(e.name) if e.sources else None
    if mirror:
        lines.append(f"  mirror       {mirror[0]}  (from {mirror[1]})")
    if e.notes:
        lines.append(f"  notes        {e.notes}")
    lines.append(f"  status       {status}")
    if e.name != "folder":
        lines.append(f"  location     {loc}")
    ready = catalog.ready_info(e.name, args.root) if status == "ready" and e.name not in ("folder", "synthetic") else None
    if ready:
        lines.append(f"  prepared     {ready.get('prepared_at')} by {ready.get('how')}: "
                     f"{ready.get('train_images')} train / {ready.get('test_images')} test, {ready.get('num_classes')} classes")
    print("\n".join(lines))
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from fgbench.data import catalog, download
    from fgbench.errors import UserError

    entries = [catalog.get(n) for n in dict.fromkeys(args.names)]  # unknown names: exit 2 before any work
    if args.root and len(entries) > 1:
        raise UserError("--root is the folder of one dataset; give one NAME with it")
    for e in entries:
        if e.name == "folder" or (not e.auto_download and e.name != "synthetic"):
            raise UserError(f"{e.name}: cannot be downloaded automatically: {catalog.how_to_get(e)}")
    from fgbench import settings

    for e in entries:
        if e.sources:
            settings.mirror_for(e.name)  # a bad mirror URL or settings.toml: exit 2 before any download
    printer = ProgressPrinter()
    failed = 0
    for e in entries:
        t0 = time.monotonic()
        try:
            loc = download.download_dataset(e.name, root=args.root, progress=printer,
                                            timeout=args.timeout, retries=args.retries)
        except KeyboardInterrupt:
            printer.close()
            print(f"{e.name}: interrupted; what was downloaded is kept, run the same command to resume",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        except UserError as err:
            printer.close()
            print(safe_lines(str(err)), file=sys.stderr)
            failed += 1
            continue
        printer.close()
        info = catalog.ready_info(e.name, args.root) or {}
        counts = f" ({info['train_images']} train / {info['test_images']} test)" if "train_images" in info else ""
        print(f"{e.name}: ready in {safe(loc)}{counts} [{time.monotonic() - t0:.1f} s]")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from fgbench.data import catalog, download

    catalog.get(args.name)
    printer = ProgressPrinter()
    try:
        report = download.verify_dataset(args.name, root=args.root, deep=args.deep, progress=printer)
    except KeyboardInterrupt:
        printer.close()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    printer.close()
    if report.counts:
        c = report.counts
        test = "test images" if report.test_split == "test" else f"test images (from {report.test_split}/)"
        print(f"{args.name}: {c.get('classes')} classes, {c.get('train')} train / {c.get('test')} {test} "
              f"({safe(str(report.location))})")
    for problem in report.problems:  # they name image files and folders: shown safe
        print(safe(problem), file=sys.stderr)
    if report.ok:
        detail = ""
        if args.deep:
            detail = (f" ({report.decoded} images decoded)" if report.decoded
                      else " (no image files to decode: the counts were checked)")
        print(f"{args.name}: ok{detail}")
        return EXIT_OK
    if report.corrupt:
        print(f"{args.name}: {len(report.corrupt)} corrupt image(s); set data.skip_corrupt = true to train without them",
              file=sys.stderr)
    return EXIT_FAILED


def cmd_import(args: argparse.Namespace) -> int:
    from fgbench.data import catalog, download

    catalog.get(args.name)
    printer = ProgressPrinter()
    try:
        loc = download.import_dataset(args.name, args.path, root=args.root, progress=printer)
    except KeyboardInterrupt:
        printer.close()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        printer.close()
    missing = download.missing_files(args.name, args.root)
    if missing:
        print(f"{args.name}: imported {safe(args.path)}; still needed: {safe(', '.join(missing))} "
              f"(import them too, or run `fgbench data download {args.name}`)")
        return EXIT_OK
    info = catalog.ready_info(args.name, args.root) or {}
    print(f"{args.name}: ready in {safe(loc)} ({info.get('train_images')} train / {info.get('test_images')} test)")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from fgbench.data import catalog, download
    from fgbench.errors import UserError

    entry = catalog.get(args.name)
    if entry.name == "folder":
        if not args.root:
            raise UserError("folder: give --root DIR, the folder whose caches to remove (fgbench never deletes "
                            "your folder itself)")
        removed, size = download.remove_folder_caches(args.root)
        if removed:
            print(f"folder: removed the caches fgbench built for {safe(args.root)} ({catalog.format_bytes(size)}); "
                  "the folder itself is untouched")
        else:
            print(f"folder: no caches of {safe(args.root)} to remove; the folder itself is never touched")
        return EXIT_OK
    loc = catalog.location(args.name, args.root)
    if not loc.exists():
        print(f"{args.name}: nothing to remove ({safe(loc)} does not exist)")
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError(f"{args.name}: refusing to delete {safe(loc)} without confirmation; add --yes")
        answer = input(f"Delete {safe(loc)} ({catalog.format_bytes(_du(loc))})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return EXIT_OK
    download.remove_dataset(args.name, root=args.root)
    print(f"{args.name}: removed {safe(loc)}")
    return EXIT_OK


def _du(path) -> int:
    import os

    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total

"""The download engine: fetch, verify, extract and prepare catalog datasets (pure zone: stdlib).

``download_dataset`` walks one dataset through four steps, each of which leaves a mark so that an
interrupted run continues where it stopped::

    download  ->  .downloads/<file>.part, resumed with an HTTP Range request
    verify    ->  size and md5 checked, then renamed to .downloads/<file>
    extract   ->  unpacked into a scratch folder, moved into place, marked .steps/<file>.done,
                  and the archive is deleted
    prepare   ->  fgbench-index.json, then fgbench-ready.json (the only "ready" mark), last

Decisions and trade-offs:

* Plain ``urllib``: no third-party HTTP client in the pure zone. Each file is streamed in 1 MiB
  chunks; a failed or dropped connection is retried with exponential back-off, resuming from the
  bytes already on disk. The retry budget resets whenever an attempt made progress, so a slow
  link that drops every few minutes still finishes, while a dead one fails in about 15 s.
* A server that ignores ``Range`` (answers 200) is handled by starting the file over: resuming
  must never splice two different byte streams.
* The md5 is computed in a separate pass after the download (a resumed file would otherwise
  need its first part re-read anyway); it costs a few seconds per GB.
* Extraction is our own loop over the members, not ``extractall``: every member name is checked
  before anything is written (absolute paths, ``..``, links whose target resolves outside the
  folder, device files and FIFOs are refused with an error naming the member), writes go through
  ``realpath`` so an earlier symlink cannot redirect a later file, and archive permission bits
  are not applied. Members are extracted into a scratch folder that is moved into place only
  when the whole archive succeeded.
* A mirror (``FGBENCH_MIRROR_<NAME>`` or ``[mirrors]`` in the settings file) *replaces* the
  catalog URLs instead of being tried first: a user who sets one wants no traffic elsewhere, and
  the tests must never reach the internet.
* A per-dataset lock (``flock`` on ``<location>/.lock``) keeps the TUI and a shell from
  downloading the same dataset into the same ``.part`` at once; the OS releases it if the
  process dies.
* ``remove_dataset`` deletes only folders that carry fgbench's marks, never an arbitrary
  ``--root`` and never the user's own folder behind an imported index.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import stat
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Literal

from fgbench import settings
from fgbench.data import catalog
from fgbench.data.catalog import Entry, Source
from fgbench.errors import UserError

CHUNK = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 4
#: seconds to wait before retry n (the last value repeats)
RETRY_DELAYS_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
PROGRESS_INTERVAL_S = 0.1

Stage = Literal["download", "verify", "extract", "prepare"]


class DownloadError(UserError):
    """A dataset could not be fetched or failed its checks. The message names the URL or file,
    and how to proceed by hand (``fgbench data import``)."""


class DamagedArchiveError(DownloadError):
    """An archive that cannot be read to the end (truncated, or not an archive at all)."""


class UnsafeArchiveError(UserError):
    """An archive member would escape the target folder or is a device file."""


class DatasetBusy(UserError):
    """Another process holds the dataset's lock."""


class Cancelled(Exception):
    """The caller's cancel event was set; partial files are kept so a re-run resumes."""


@dataclass
class Progress:
    stage: Stage
    done_bytes: int
    total_bytes: int | None
    #: units per second over the last few seconds
    speed: float
    eta_s: float | None
    message: str
    #: "B" for bytes; verification of images counts "images"; "" for a step without amounts
    unit: str = "B"

    @property
    def fraction(self) -> float | None:
        if not self.total_bytes:
            return None
        return min(1.0, self.done_bytes / self.total_bytes)


ProgressFn = Callable[[Progress], None]


class ProgressMeter:
    """Turns a stream of ``done`` counts into throttled Progress callbacks with speed and ETA."""

    def __init__(self, progress: ProgressFn | None, stage: Stage, message: str, total: int | None, unit: str = "B"):
        self.progress, self.stage, self.message, self.total, self.unit = progress, stage, message, total, unit
        self.samples: deque[tuple[float, int]] = deque()
        self.last_emit = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 5.0:
            self.samples.popleft()
        if not force and now - self.last_emit < PROGRESS_INTERVAL_S:
            return
        self.last_emit = now
        t0, d0 = self.samples[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - done) / speed if self.total is not None and speed > 0 else None
        self.progress(Progress(self.stage, done, self.total, speed, eta, self.message, self.unit))

    def notice(self, text: str) -> None:
        """Say something about the step now (a retry and when it happens), unthrottled."""
        if self.progress is None:
            return
        done = self.samples[-1][1] if self.samples else 0
        self.progress(Progress(self.stage, done, self.total, 0.0, None, f"{self.message}: {text}", self.unit))


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled()


# ------------------------------------------------------------------------------- HTTP fetch


class _Fatal(Exception):
    """This URL will not work (404, 403, ...): try the next one, do not retry."""


class _Retry(Exception):
    """A transient failure: retry the same URL after a pause."""


class _Unresolved(_Fatal):
    """The host name does not resolve (offline, or no DNS): retrying the same host in a few
    seconds would not help, so the next URL is tried at once."""


def _user_agent() -> str:
    from fgbench import __version__

    return f"fgbench/{__version__} (+python-urllib)"


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a ``Content-Range: bytes a-b/N`` (or ``bytes */N``) header."""
    m = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _attempt(url: str, part: Path, source: Source, meter: ProgressMeter, timeout: float, cancel: threading.Event | None) -> None:
    """One HTTP request, appending to ``part``. Returns when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    if source.size is not None and have > source.size:
        part.unlink()
        have = 0
    if source.size is not None and have == source.size:
        return
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # our part already holds every byte, or more
            _start, total = _content_range(err.headers.get("Content-Range"))
            if total is not None and total == have:
                return
            part.unlink()
            raise _Retry("the server refused to resume (HTTP 416); starting over") from None
        if err.code in (408, 425, 429) or err.code >= 500:
            raise _Retry(f"HTTP {err.code} {err.reason}") from None
        raise _Fatal(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        if isinstance(reason, socket.gaierror):
            host = urllib.parse.urlsplit(url).hostname or url
            raise _Unresolved(f"cannot resolve {host} ({reason.strerror or reason})") from None
        raise _Retry(str(reason)) from None
    with response:
        code = getattr(response, "status", None) or 200
        if have and code == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != have:
                part.unlink()
                raise _Retry(f"the server resumed at byte {start}, not {have}; starting over")
            mode = "ab"
        else:  # a full response: the server ignored Range (or we asked for everything)
            if have:
                meter.samples.clear()  # the count restarts at 0: keep the speed meaningful
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is None:
            total = source.size
        meter.total = total
        if source.size is not None and total is not None and total != source.size:
            raise _Fatal(f"the server offers {total} bytes, the catalog expects {source.size}")
        with open(part, mode) as f:
            while True:
                _check_cancel(cancel)
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:  # connection dropped mid-stream
                    raise _Retry(f"connection lost after {have} bytes ({err})") from None
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as err:  # a local problem (disk full): retrying would not help
                    raise DownloadError(f"{part}: cannot write ({err.strerror or err})") from None
                have += len(chunk)
                meter.update(have)
                if source.size is not None and have > source.size:
                    raise _Fatal(f"received more than the expected {source.size} bytes")
        meter.update(have, force=True)
        if total is not None and have < total:
            raise _Retry(f"connection closed after {have} of {total} bytes")


def _fetch_url(url: str, part: Path, source: Source, meter: ProgressMeter, *, timeout: float, retries: int, cancel) -> None:
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _attempt(url, part, source, meter, timeout, cancel)
            return
        except _Retry as err:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1  # progress resets the budget
            if failures > retries:
                raise _Fatal(f"{err} (gave up after {retries} retries)") from None
            delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1] if failures else 0.0
            meter.notice(f"{err}; retry {failures} of {retries} in {delay:.0f} s" if failures
                         else f"{err}; continuing at once")
            if cancel is not None:
                if cancel.wait(delay):
                    raise Cancelled() from None
            elif delay:
                time.sleep(delay)


def file_md5(path: Path, progress: ProgressFn | None = None, cancel: threading.Event | None = None, message: str = "") -> str:
    h = hashlib.md5()
    meter = ProgressMeter(progress, "verify", message or f"checking {path.name}", path.stat().st_size)
    done = 0
    with open(path, "rb") as f:
        while True:
            _check_cancel(cancel)
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            done += len(chunk)
            meter.update(done)
    meter.update(done, force=True)
    return h.hexdigest()


def check_file(path: Path, source: Source, progress=None, cancel=None) -> str | None:
    """None when ``path`` has the source's size and md5 (where known), else what is wrong."""
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        return f"{path}: {size} bytes, expected {source.size}"
    if source.md5:
        got = file_md5(path, progress, cancel, f"checking {source.filename}")
        if got != source.md5.lower():
            return f"{path}: md5 {got}, expected {source.md5}"
    return None


def fetch(urls: tuple[str, ...], dest: Path, source: Source, *, name: str, progress=None, cancel=None,
          timeout: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES) -> Path:
    """Download ``source`` from the first of ``urls`` that works into ``dest``, verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    unresolved = 0
    for url in urls:
        meter = ProgressMeter(progress, "download", f"{name}: {source.filename}", source.size)
        try:
            _fetch_url(url, part, source, meter, timeout=timeout, retries=retries, cancel=cancel)
            break
        except _Fatal as err:
            failures.append(f"{url}: {err}")
            unresolved += isinstance(err, _Unresolved)
            if url != urls[-1]:
                meter.notice(f"{err}; trying the next address")
    else:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
        head = (f"{name}: no host could be resolved, this machine looks offline" if unresolved == len(urls)
                else f"{name}: download failed")
        raise DownloadError(f"{head}: {'; '.join(failures)}. {_manual_hint(name, source)}")
    problem = check_file(part, source, progress, cancel)
    if problem:
        part.unlink()
        raise DownloadError(f"{name}: the downloaded file failed its check ({problem}); it was deleted, "
                            f"run the download again. {_manual_hint(name, source)}")
    os.replace(part, dest)
    return dest


def _manual_hint(name: str, source: Source) -> str:
    return (f"If this machine is offline or the site blocks it, download {source.filename} "
            f"elsewhere and run `fgbench data import {name} /path/to/{source.filename}`, or set a mirror "
            f"({settings.mirror_env_var(name)}=URL, or [mirrors] {name} = \"URL\" in {_settings_path()}).")


def _settings_path() -> Path:
    from fgbench import paths

    return paths.settings_file()


def source_urls(entry: Entry, source: Source) -> tuple[str, ...]:
    """The URLs to try for ``source``: the configured mirror alone, or the catalog's."""
    mirror = settings.mirror_for(entry.name)
    if mirror is None:
        return source.urls
    url = mirror[0]
    if len(entry.sources) == 1 and not url.endswith("/"):
        return (url,)
    return (url.rstrip("/") + "/" + source.filename,)


# ------------------------------------------------------------------------------ extraction


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _safe_target(root_real: str, name: str, archive: Path) -> str | None:
    """The real path a member may be written to; None for names that mean "the root itself"."""
    def refuse(why: str):
        raise UnsafeArchiveError(f"{archive.name}: refusing to extract {name!r}: {why}")

    if "\x00" in name:
        refuse("NUL in the name")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        refuse("absolute path")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if ".." in parts:
        refuse("'..' in the path")
    if not parts:
        return None
    target = os.path.join(root_real, *parts)
    # resolve symlinks extracted earlier: a link to outside must not carry later members out
    parent_real = os.path.realpath(os.path.dirname(target))
    if not _inside(parent_real, root_real):
        refuse("it would be written outside the target folder (through a link)")
    full = os.path.join(parent_real, parts[-1])
    if os.path.islink(full) and not _inside(os.path.realpath(full), root_real):
        refuse("it would be written through a link that points outside the target folder")
    return full


def _check_link(root_real: str, target: str, linkname: str, archive: Path, name: str) -> None:
    if os.path.isabs(linkname) or linkname.startswith("\\"):
        raise UnsafeArchiveError(f"{archive.name}: refusing to extract {name!r}: link to absolute path {linkname!r}")
    resolved = os.path.realpath(os.path.join(os.path.dirname(target), linkname))
    if not _inside(resolved, root_real):
        raise UnsafeArchiveError(f"{archive.name}: refusing to extract {name!r}: link {linkname!r} points outside the target folder")


class _CountingReader:
    """A file wrapper that reports how many compressed bytes were read (extract progress)."""

    def __init__(self, f, meter: ProgressMeter, cancel):
        self.f, self.meter, self.cancel, self.n = f, meter, cancel, 0

    def read(self, size: int = -1) -> bytes:
        _check_cancel(self.cancel)
        data = self.f.read(size)
        self.n += len(data)
        self.meter.update(self.n)
        return data


def _write_stream(src, target: str) -> None:
    if os.path.lexists(target) and not os.path.isfile(target):
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    with open(target, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def _extract_tar(archive: Path, dest: Path, meter: ProgressMeter, cancel) -> None:
    root_real = os.path.realpath(dest)
    with open(archive, "rb") as raw:
        reader = _CountingReader(raw, meter, cancel)
        try:
            tar = tarfile.open(fileobj=reader, mode="r|*")
        except tarfile.TarError as err:
            raise DamagedArchiveError(f"{archive}: not a readable tar archive ({err})") from None
        with tar:
            try:
                for m in tar:
                    target = _safe_target(root_real, m.name, archive)
                    if target is None:
                        continue
                    if m.isdir():
                        os.makedirs(target, exist_ok=True)
                    elif m.isreg():
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        src = tar.extractfile(m)
                        _write_stream(src, target)
                    elif m.issym():
                        _check_link(root_real, target, m.linkname, archive, m.name)
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        if os.path.lexists(target):
                            os.unlink(target)
                        os.symlink(m.linkname, target)
                    elif m.islnk():
                        try:
                            source = _safe_target(root_real, m.linkname, archive)
                        except UnsafeArchiveError as err:
                            why = str(err).rsplit(": ", 1)[-1]
                            raise UnsafeArchiveError(f"{archive.name}: refusing to extract {m.name!r}: "
                                                     f"hard link to {m.linkname!r}: {why}") from None
                        if source is None or not os.path.isfile(source):
                            raise UnsafeArchiveError(f"{archive.name}: refusing to extract {m.name!r}: hard link to {m.linkname!r}, which is not a file extracted before it")
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        with open(source, "rb") as src:
                            _write_stream(src, target)
                    else:
                        kind = "a device file" if (m.ischr() or m.isblk()) else "a FIFO" if m.isfifo() else f"an unsupported member type {m.type!r}"
                        raise UnsafeArchiveError(f"{archive.name}: refusing to extract {m.name!r}: {kind}")
            except (tarfile.TarError, EOFError, OSError) as err:
                if isinstance(err, OSError) and err.errno is not None and err.errno in (28,):  # ENOSPC
                    raise DownloadError(f"{archive}: the disk is full while extracting to {dest}") from None
                raise DamagedArchiveError(f"{archive}: damaged archive ({err})") from None


def _extract_zip(archive: Path, dest: Path, meter: ProgressMeter, cancel) -> None:
    root_real = os.path.realpath(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DamagedArchiveError(f"{archive}: not a readable zip archive ({err})") from None
    done = 0
    with zf:
        try:
            for info in zf.infolist():
                _check_cancel(cancel)
                target = _safe_target(root_real, info.filename, archive)
                mode = info.external_attr >> 16
                if target is None:
                    continue
                if stat.S_ISLNK(mode):
                    linkname = zf.read(info).decode("utf-8", "replace")
                    _check_link(root_real, target, linkname, archive, info.filename)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    if os.path.lexists(target):
                        os.unlink(target)
                    os.symlink(linkname, target)
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                    raise UnsafeArchiveError(f"{archive.name}: refusing to extract {info.filename!r}: a device file or FIFO")
                elif info.is_dir():
                    os.makedirs(target, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with zf.open(info) as src:
                        _write_stream(src, target)
                done += info.compress_size
                meter.update(done)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
            raise DamagedArchiveError(f"{archive}: damaged archive ({err})") from None


def _merge_into(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; directories are merged (an earlier, partial move is completed)."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in src.iterdir():
            _merge_into(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif os.path.lexists(dst):
        dst.unlink()
    os.replace(src, dst)


def extract_archive(archive: Path, target: Path, *, progress=None, cancel=None, message: str = "") -> None:
    """Safely extract ``archive`` into ``target``: first into a scratch folder beside it, then
    moved into place, so a failure or interrupt never leaves half an archive in ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    scratch = target / f".extract-{archive.name}"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir()
    meter = ProgressMeter(progress, "extract", message or f"extracting {archive.name}", archive.stat().st_size)
    try:
        if archive.name.lower().endswith(".zip") or (zipfile.is_zipfile(archive) and not tarfile.is_tarfile(archive)):
            _extract_zip(archive, scratch, meter, cancel)
        else:
            _extract_tar(archive, scratch, meter, cancel)
        meter.update(archive.stat().st_size, force=True)
        for child in sorted(scratch.iterdir()):
            _merge_into(child, target / child.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ------------------------------------------------------------------------------- pipeline


@contextmanager
def _locked(loc: Path) -> Iterator[None]:
    loc.mkdir(parents=True, exist_ok=True)
    f = open(loc / catalog.LOCK_FILE, "a+")
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatasetBusy(f"{loc}: another fgbench process is working on this dataset; "
                                "wait for it to finish") from None
        yield
    finally:
        f.close()


def _step_marker(loc: Path, source: Source) -> Path:
    return loc / catalog.STEPS_DIR / f"{source.filename}.done"


def _mark_step(loc: Path, source: Source) -> None:
    from fgbench.atomic import atomic_write_text

    (loc / catalog.STEPS_DIR).mkdir(exist_ok=True)
    atomic_write_text(_step_marker(loc, source), time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def _unready(loc: Path) -> None:
    """Forget an earlier ready state before changing the dataset (ready marker first)."""
    for f in (catalog.READY_FILE, catalog.INDEX_FILE):
        try:
            (loc / f).unlink()
        except FileNotFoundError:
            pass


def _place(src: Path, loc: Path, source: Source | None, *, move: bool, progress, cancel, name: str) -> None:
    """Extract an archive (or put a plain file such as a .mat) into ``loc``."""
    filename = source.filename if source is not None else src.name
    if source is not None and not source.is_archive:
        tmp = loc / f".{filename}.tmp"
        if move:
            os.replace(src, tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, loc / filename)
    else:
        extract_archive(src, loc, progress=progress, cancel=cancel, message=f"{name}: extracting {filename}")
        if move:
            src.unlink()
    if source is not None:
        _mark_step(loc, source)


def _finish(entry: Entry, loc: Path, search: Path, progress, how: str) -> None:
    from fgbench.data import prepare

    if progress is not None:
        progress(Progress("prepare", 0, None, 0.0, None, f"{entry.name}: indexing", unit=""))
    prepared = prepare.prepare(entry, search)
    prepare.write_index(loc, prepared, entry.name)
    prepare.write_ready(loc, prepared, entry.name, how)  # last: from here on it is "ready"
    shutil.rmtree(loc / catalog.DOWNLOADS_DIR, ignore_errors=True)
    if progress is not None:
        n = prepared.train_count + prepared.test_count
        progress(Progress("prepare", 1, 1, 0.0, None, f"{entry.name}: ready, {n} images", unit=""))


def _free_space_check(loc: Path, entry: Entry, source: Source) -> None:
    if source.size is None:
        return
    part = loc / catalog.DOWNLOADS_DIR / (source.filename + ".part")
    have = part.stat().st_size if part.exists() else 0
    need = (source.size - have) + (source.size if source.is_archive else 0)
    free = shutil.disk_usage(loc).free
    if free < need:
        raise DownloadError(f"{entry.name}: needs about {catalog.format_bytes(need)} free in {loc} "
                            f"(download and extraction), only {catalog.format_bytes(free)} available; "
                            "free some space or set FGBENCH_DATA to a bigger disk")


def download_dataset(name: str, *, root=None, progress: ProgressFn | None = None,
                     cancel: threading.Event | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                     retries: int = DEFAULT_RETRIES) -> Path:
    """Make dataset ``name`` ready (download, verify, extract, prepare) and return its location.

    Safe to call again after any failure or interrupt: finished steps are skipped and a partial
    download resumes. ``Cancelled`` is raised when ``cancel`` is set.
    """
    entry = catalog.get(name)
    loc = catalog.location(name, root)
    if name == "synthetic":
        from fgbench.data.synthetic import ensure_synthetic

        return Path(ensure_synthetic(loc))
    if name == "folder":
        raise UserError("folder: nothing to download: set data.root to your folder of train/ and test/ class folders")
    if not entry.auto_download:
        raise UserError(f"{name}: not downloaded automatically ({entry.licence}): {catalog.how_to_get(entry)}")
    if catalog.status(name, root) == "ready":
        return loc
    existed = loc.exists()
    try:
        _download_locked(entry, loc, progress=progress, cancel=cancel, timeout=timeout, retries=retries)
    except DatasetBusy:
        raise  # the other process's files, not ours to tidy
    except BaseException:
        _drop_if_empty(loc, created=not existed)
        raise
    return loc


def _drop_if_empty(loc: Path, *, created: bool) -> None:
    """After a failed or cancelled download: remove what holds no downloaded byte (an empty
    ``.part``, empty bookkeeping folders, the lock file), so a dataset that got nothing is
    ``missing``, not ``partial``. Anything with content stays for the next run to resume."""
    for sub in (catalog.DOWNLOADS_DIR, catalog.STEPS_DIR):
        d = loc / sub
        try:
            for f in d.iterdir():
                if f.name.endswith(".part") and f.is_file() and f.stat().st_size == 0:
                    f.unlink()
            d.rmdir()  # only if empty
        except OSError:
            pass
    try:
        left = [p for p in loc.iterdir() if p.name != catalog.LOCK_FILE]
    except OSError:
        return
    if not left:
        (loc / catalog.LOCK_FILE).unlink(missing_ok=True)
        if created:
            try:
                loc.rmdir()
            except OSError:
                pass


def _download_locked(entry: Entry, loc: Path, *, progress, cancel, timeout: float, retries: int) -> None:
    name = entry.name
    with _locked(loc):
        if (loc / catalog.READY_FILE).is_file():  # another process finished it meanwhile
            return
        downloads = loc / catalog.DOWNLOADS_DIR
        for source in entry.sources:
            if _step_marker(loc, source).is_file():
                continue
            archive = downloads / source.filename
            if not archive.is_file():  # an archive without .part was verified by an earlier run
                _free_space_check(loc, entry, source)
                fetch(source_urls(entry, source), archive, source, name=name, progress=progress,
                      cancel=cancel, timeout=timeout, retries=retries)
            try:
                _place(archive, loc, source, move=True, progress=progress, cancel=cancel, name=name)
            except (DamagedArchiveError, UnsafeArchiveError) as err:
                # without a checksum (the Cars mirror) a truncated file is only caught here; drop it
                # so that the next run downloads it afresh instead of failing on it forever
                archive.unlink(missing_ok=True)
                raise type(err)(f"{err}; the downloaded file was deleted, a new download fetches it again") from None
        _finish(entry, loc, loc, progress, "download")


def import_dataset(name: str, source_path, *, root=None, progress: ProgressFn | None = None,
                   cancel: threading.Event | None = None) -> Path:
    """Bring in a dataset the user downloaded by hand.

    ``source_path`` is one of the catalog's files (checked against its size and md5 where
    known, then extracted; the user's file is left alone), a folder holding such files, or an
    already-extracted folder, which is indexed where it is (nothing copied). For datasets made
    of several files (Pets, Flowers) each may be imported separately; the dataset becomes ready
    once all of them are in. Returns the dataset location.
    """
    entry = catalog.get(name)
    if name in ("folder", "synthetic"):
        raise UserError(f"{name}: nothing to import: " + ("set data.root to your folder" if name == "folder" else "it is generated"))
    src = Path(source_path).expanduser()
    if not src.exists():
        raise UserError(f"{src}: no such file or folder")
    loc = catalog.location(name, root)
    src_real = src.resolve()
    with _locked(loc):
        if src.is_dir():
            files = [src / s.filename for s in entry.sources if (src / s.filename).is_file()]
            if not files:  # an extracted tree: index it in place
                _unready(loc)
                _finish(entry, loc, src_real, progress, f"import of {src_real}")
                return loc
        else:
            files = [src]
        _unready(loc)
        for f in files:
            _import_file(entry, loc, f, progress, cancel)
        missing = [s.filename for s in entry.sources if not _step_marker(loc, s).is_file()]
        if missing:
            return loc  # partial: the caller tells the user what is still needed
        _finish(entry, loc, loc, progress, f"import of {src_real}")
    return loc


def missing_files(name: str, root=None) -> list[str]:
    """Catalog files of ``name`` not yet downloaded or imported (for an import of one of several)."""
    entry = catalog.get(name)
    loc = catalog.location(name, root)
    return [s.filename for s in entry.sources if not _step_marker(loc, s).is_file()]


def _import_file(entry: Entry, loc: Path, f: Path, progress, cancel) -> None:
    by_name = {s.filename: s for s in entry.sources}
    source = by_name.get(f.name)
    if source is None and len(entry.sources) == 1 and entry.sources[0].is_archive:
        source = entry.sources[0]  # the one archive, saved under another name
    if source is None and entry.sources:
        raise UserError(f"{f}: not one of the files of {entry.name} ({', '.join(by_name)})")
    if source is None and not f.name.lower().endswith(catalog.ARCHIVE_SUFFIXES):
        raise UserError(f"{f}: expected an archive (.zip, .tar.gz, .tgz, .tar) or an extracted folder")
    if source is not None:
        problem = check_file(f, source, progress, cancel)
        if problem:
            raise UserError(f"{entry.name}: {problem}: this is not the file fgbench expects "
                            "(a different version or a damaged download)")
    _place(f, loc, source, move=False, progress=progress, cancel=cancel, name=entry.name)


def remove_dataset(name: str, *, root=None) -> None:
    """Delete a prepared (or partial) dataset and its pixel caches. The ready mark goes first,
    so a half-removed dataset never looks ready. An imported folder outside the location is left
    untouched."""
    entry = catalog.get(name)
    if entry.name == "folder":
        raise UserError("folder: fgbench never owns your folder; delete it yourself if you want to "
                        "(`fgbench data remove folder --root DIR` removes only the caches fgbench built for it)")
    loc = catalog.location(name, root)
    if not loc.exists():
        shutil.rmtree(catalog.cache_dir(name), ignore_errors=True)
        return
    ours = (catalog.READY_FILE, catalog.INDEX_FILE, catalog.DOWNLOADS_DIR, catalog.STEPS_DIR, catalog.LOCK_FILE)
    default = root is None or Path(root).expanduser().resolve() == (catalog.location(name)).resolve()
    if not default and not any((loc / m).exists() for m in ours):
        raise UserError(f"{loc}: does not look like a folder fgbench prepared (no {catalog.READY_FILE}); not deleting it")
    with _locked(loc):
        _unready(loc)
        shutil.rmtree(loc)
    shutil.rmtree(catalog.cache_dir(name), ignore_errors=True)


def remove_folder_caches(root) -> tuple[list[Path], int]:
    """Delete the pixel caches fgbench built for the user folder ``root`` (``data.loader =
    "cached"``); the folder itself is never touched. Caches of the older layout, shared by every
    folder (``.cache/folder/train`` and ``test``), go too: they are rebuilt on the next cached run.
    Returns the folders deleted and their size in bytes."""
    base = catalog.cache_dir("folder")
    targets = [catalog.cache_dir("folder", root)] + [base / split for split in ("train", "test")]
    removed, size = [], 0
    for d in targets:
        if d.is_dir():
            size += sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            shutil.rmtree(d)
            removed.append(d)
    return removed, size


# --------------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    name: str
    location: Path
    problems: list[str] = field(default_factory=list)
    #: "classes", "train", "test"
    counts: dict[str, int] = field(default_factory=dict)
    #: (path, reason) of every image that failed to decode (deep verification only)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    deep: bool = False
    #: images decoded by a deep verification (0 for CIFAR, whose pickles hold no image files)
    decoded: int = 0
    #: the folder the test split is read from, for a user folder (``val`` when there is no ``test/``)
    test_split: str = "test"

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_dataset(name: str, *, root=None, deep: bool = False, progress: ProgressFn | None = None,
                   cancel: threading.Event | None = None) -> VerifyReport:
    """Check a prepared dataset: counts against the catalog, every indexed file present, and with
    ``deep`` every image decoded (this imports the engine's image code, ``fgbench.data.fast``)."""
    from fgbench.data import prepare
    from fgbench.data.index import DatasetIndex, folder_index

    entry = catalog.get(name)
    loc = catalog.location(name, root)
    report = VerifyReport(name, loc, deep=deep)
    index: DatasetIndex
    if name in ("folder", "synthetic"):
        if catalog.status(name, root) != "ready":
            report.problems.append(f"{loc}: not present ({catalog.how_to_get(entry)})")
            return report
        index = folder_index(loc, name)
        report.test_split = Path(index.test_dir).name if index.test_dir else "test"
    else:
        st = catalog.status(name, root)
        if st != "ready":
            what = "only partly downloaded or prepared" if st == "partial" else "not downloaded"
            report.problems.append(f"{name}: {what} ({loc}): {catalog.how_to_get(entry)}")
            return report
        try:
            index = prepare.read_index(loc)
        except UserError as err:
            report.problems.append(str(err))
            return report
    if index.kind == "cifar":
        try:
            prepared = prepare.PREPARERS[entry.prepare](Path(index.root))
        except UserError as err:
            report.problems.append(str(err))
            return report
        report.counts = {"classes": len(prepared.class_names), "train": prepared.train_count, "test": prepared.test_count}
        report.problems.extend(f"{name}: {p}" for p in prepare.count_problems(entry, prepared))
        return report
    report.counts = {"classes": index.num_classes, "train": len(index.train), "test": len(index.test)}
    counted = prepare.Prepared("files", Path(index.root or loc), index.class_names, index.train, index.test)
    report.problems.extend(f"{name}: {p}" for p in prepare.count_problems(entry, counted))
    all_paths = [p for p, _ in index.train] + [p for p, _ in index.test]
    missing = [p for p in all_paths if not os.path.isfile(p)]
    if missing:
        report.problems.append(f"{name}: {len(missing)} indexed image(s) missing, e.g. {missing[0]}")
    if deep:
        from fgbench.data.fast import find_corrupt_images

        gone = set(missing)
        present = [p for p in all_paths if p not in gone]
        report.corrupt = find_corrupt_images(present, progress=progress, cancel=cancel)
        report.decoded = len(present)
        for path, reason in report.corrupt:
            report.problems.append(f"corrupt image: {path} ({reason})")
    return report


__all__ = [
    "Cancelled",
    "DamagedArchiveError",
    "DownloadError",
    "Progress",
    "UnsafeArchiveError",
    "VerifyReport",
    "download_dataset",
    "extract_archive",
    "fetch",
    "import_dataset",
    "missing_files",
    "remove_dataset",
    "remove_folder_caches",
    "source_urls",
    "verify_dataset",
]

"""Hostile archives, built here in tar, tar.gz and zip, through ``extract_archive`` and through a
download from the local HTTP server: each is refused naming the member, nothing exists outside the
target afterwards, no link is left inside it, and the dataset is never marked ready.

Members are described once (kind, name, payload) and written by a builder per format; zip has no
hard links, so those cases are tar only.
"""

from __future__ import annotations

import io
import re
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from fgdata_builders import cub_files

from fgbench.data import catalog, download
from fgbench.data.download import UnsafeArchiveError, extract_archive
from fgbench.errors import UserError
from fakes.disk import tmpfs_works

FORMATS = ["tar", "tar.gz", "zip"]


def build(fmt: str, members: list[tuple]) -> bytes:
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for kind, name, *rest in members:
                if kind == "file":
                    zf.writestr(name, rest[0])
                elif kind == "dir":
                    zf.writestr(name.rstrip("/") + "/", b"")
                else:
                    mode = {"sym": stat.S_IFLNK, "chr": stat.S_IFCHR, "fifo": stat.S_IFIFO}[kind]
                    info = zipfile.ZipInfo(name)
                    info.external_attr = (mode | 0o644) << 16
                    zf.writestr(info, rest[0].encode() if kind == "sym" else b"")
        return buf.getvalue()
    with tarfile.open(fileobj=buf, mode="w:gz" if fmt == "tar.gz" else "w") as tar:
        for kind, name, *rest in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(rest[0])
                tar.addfile(info, io.BytesIO(rest[0]))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = rest[0]
            tar.addfile(info)
    return buf.getvalue()


# (id, members, the member the error must name, words of the reason, formats it applies to)
HOSTILE = [
    ("traversal", [("file", "ok.txt", b"ok"), ("file", "../evil.txt", b"x")], "../evil.txt", "'..'", FORMATS),
    ("deep-traversal", [("file", "a/b/../../../evil.txt", b"x")], "a/b/../../../evil.txt", "'..'", FORMATS),
    ("absolute", [("file", "/tmp/fgbench-hostile-evil.txt", b"x")], "/tmp/fgbench-hostile-evil.txt", "absolute", FORMATS),
    ("link-absolute", [("sym", "etc", "/etc")], "etc", "absolute", FORMATS),
    ("link-outside", [("file", "d/keep.txt", b"k"), ("sym", "d/up", "../../outside")], "d/up", "points outside", FORMATS),
    # each link alone stays inside; together x resolves to two levels above the folder
    ("link-chain", [("dir", "d/e"), ("sym", "d/e/x", "y/../../.."), ("sym", "d/e/y", "../..")], "d/e/x",
     "points outside", FORMATS),
    # the same chain, declared in the other order
    ("link-chain-reversed", [("sym", "d/e/y", "../.."), ("sym", "d/e/x", "y/../../..")], "d/e/x", "points outside", FORMATS),
    ("link-loop", [("sym", "a", "b"), ("sym", "b", "a")], "a", "points outside", FORMATS),
    ("write-through-link", [("sym", "l", "."), ("file", "l/evil.txt", b"x")], "l/evil.txt", "through the link",
     FORMATS),
    # the link itself leads out: tarfile's data filter refuses it before the file below it is read
    ("outside-link-then-a-file-below-it", [("sym", "l", "../outside"), ("file", "l/evil.txt", b"x")], "l",
     "points outside", FORMATS),
    # a link that leads out only through another link passes the filter; the file below it is refused
    ("write-through-outside-link", [("dir", "d/e"), ("sym", "d/e/y", "../.."), ("sym", "l", "d/e/y/../.."),
                                    ("file", "l/evil.txt", b"x")], "l/evil.txt", "through the link", FORMATS),
    ("hard-link-absolute", [("hard", "h", "/etc/passwd")], "h", "absolute", ["tar", "tar.gz"]),
    ("hard-link-traversal", [("hard", "h", "../outside.txt")], "h", "'..'", ["tar", "tar.gz"]),
    ("hard-link-to-nothing", [("hard", "h", "never-extracted.txt")], "h", "not a file extracted before", ["tar", "tar.gz"]),
    ("char-device", [("chr", "dev/null", "")], "dev/null", "device", FORMATS),
    ("block-device", [("blk", "dev/sda", "")], "dev/sda", "device", ["tar", "tar.gz"]),
    ("fifo", [("fifo", "pipe.jpg", "")], "pipe.jpg", "FIFO", FORMATS),
    ("ready-marker", [("file", catalog.READY_FILE, b"{}")], catalog.READY_FILE, "fgbench's own files", FORMATS),
    ("index", [("file", catalog.INDEX_FILE, b"{}")], catalog.INDEX_FILE, "fgbench's own files", FORMATS),
    ("nested-ready-marker", [("file", f"CUB_200_2011/{catalog.READY_FILE}", b"{}")], f"CUB_200_2011/{catalog.READY_FILE}",
     "fgbench's own files", FORMATS),
    ("steps-marker", [("file", f"{catalog.STEPS_DIR}/CUB_200_2011.tgz.done", b"x")],
     f"{catalog.STEPS_DIR}/CUB_200_2011.tgz.done", "fgbench's own files", FORMATS),
    ("lock-link", [("sym", catalog.LOCK_FILE, "../outside")], catalog.LOCK_FILE, "fgbench's own files", FORMATS),
]
CASES = [pytest.param(fmt, members, member, why, id=f"{case}-{fmt}")
         for case, members, member, why, fmts in HOSTILE for fmt in fmts]


def snapshot(root: Path, skip: Path) -> set[str]:
    """Every path under ``root`` except those under ``skip`` (links are listed, never followed)."""
    out = set()
    for d, dirs, files in os.walk(root):
        if Path(d) == skip or skip in Path(d).parents:
            continue
        out.update(os.path.join(d, n) for n in dirs + files)
    return out


def links_under(root: Path) -> list[str]:
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
            if os.path.islink(os.path.join(d, n))]


@pytest.mark.parametrize("fmt, members, member, why", CASES)
def test_hostile_archive_is_refused_and_leaves_nothing(tmp_path, fmt, members, member, why):
    Path("/tmp/fgbench-hostile-evil.txt").unlink(missing_ok=True)  # what a broken extractor wrote before
    archive = tmp_path / f"hostile.{fmt}"
    archive.write_bytes(build(fmt, members))
    target = tmp_path / "box" / "target"
    target.mkdir(parents=True)
    before = snapshot(tmp_path, target)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)
    msg = str(err.value)
    assert f"refusing to extract {member!r}" in msg and why in msg and archive.name in msg
    assert "\n" not in msg
    assert "once merged" not in msg  # refused in the scratch folder: nothing was ever moved into the target
    assert snapshot(tmp_path, target) == before  # nothing outside the target
    assert list(target.iterdir()) == []  # nothing inside either: scratch folder gone
    assert not os.path.lexists("/tmp/fgbench-hostile-evil.txt")


@pytest.mark.parametrize("fmt, members, member, why", CASES)
def test_hostile_download_is_refused_and_never_ready(serve_dataset, tmp_path, fmt, members, member, why):
    files, _facts = cub_files(per_class=1)
    # a real dataset around the hostile members: everything else would make it ready
    good = [("file", path, data) for path, data in files.items()]
    filename = "CUB_200_2011." + ("tgz" if fmt == "tar.gz" else fmt)
    serve_dataset("cub200", {filename: build(fmt, good + members)})
    loc = catalog.location("cub200")
    home = loc.parent.parent
    loc.mkdir(parents=True)
    before = snapshot(home, loc)
    with pytest.raises(UnsafeArchiveError) as err:
        download.download_dataset("cub200")
    assert f"refusing to extract {member!r}" in str(err.value) and why in str(err.value)
    assert snapshot(home, loc) == before
    assert catalog.status("cub200") != "ready"
    assert not os.path.lexists(loc / catalog.READY_FILE) and not os.path.lexists(loc / catalog.INDEX_FILE)
    assert links_under(loc) == []
    assert not (loc / "CUB_200_2011").exists()


def _bomb(fmt: str, size: int) -> bytes:
    return build(fmt, [("file", "CUB_200_2011/images/zeros.jpg", b"\0" * size)])


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_a_bomb_stops_at_its_budget_and_is_cleaned_up(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(download, "EXPAND_SLACK", 0)  # the budget is then 4x the archive's size
    archive = tmp_path / f"bomb.{fmt}"
    archive.write_bytes(_bomb(fmt, 4 << 20))  # 4 MiB of zeros compress to a few KB
    assert archive.stat().st_size * 4 < 4 << 20
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match=r"refusing to extract 'CUB_200_2011/images/zeros\.jpg': the archive "
                                                 r"unpacks to more than .* decompression bomb"):
        extract_archive(archive, target)
    assert list(target.iterdir()) == []


def test_a_bomb_download_is_refused_by_the_catalog_size_and_not_ready(serve_dataset, monkeypatch):
    monkeypatch.setattr(download, "EXPAND_SLACK", 0)
    serve_dataset("cub200", {"CUB_200_2011.tgz": _bomb("tar.gz", 4 << 20)})
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        download.download_dataset("cub200")
    loc = catalog.location("cub200")
    assert catalog.status("cub200") != "ready" and not (loc / "CUB_200_2011").exists()


def test_the_budget_follows_the_catalog_size_not_the_file(tmp_path, monkeypatch):
    """The same archive passes with a budget that fits and stops with one that does not."""
    monkeypatch.setattr(download, "EXPAND_SLACK", 0)
    archive = tmp_path / "a.tar"
    archive.write_bytes(build("tar", [("file", "x.bin", b"1" * 10000)]))
    extract_archive(archive, tmp_path / "ok", budget=download.extraction_budget(10000))
    assert (tmp_path / "ok" / "x.bin").stat().st_size == 10000
    with pytest.raises(UnsafeArchiveError, match="more than"):
        extract_archive(archive, tmp_path / "small", budget=5000)


def test_a_link_merged_beside_an_earlier_archives_link_is_judged_again(tmp_path):
    """In its own scratch folder ``sub/x -> ../d/..`` stays inside; beside an earlier ``d -> .``
    it leads out of the dataset folder, so it is refused after the merge and removed."""
    target = tmp_path / "target"
    first = tmp_path / "first.tar"
    first.write_bytes(build("tar", [("sym", "d", ".")]))
    extract_archive(first, target)
    second = tmp_path / "second.tar"
    second.write_bytes(build("tar", [("file", "sub/keep.txt", b"k"), ("sym", "sub/x", "../d/..")]))
    with pytest.raises(UnsafeArchiveError, match=r"'sub/x'.*points outside the target folder once merged"):
        extract_archive(second, target)
    assert not os.path.lexists(target / "sub" / "x")
    assert all(os.path.realpath(p).startswith(str(target.resolve())) for p in links_under(target))


def test_inside_links_and_chains_that_stay_inside_are_kept(tmp_path):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(build("tar", [("file", "pkg/README", b"hello"), ("dir", "pkg/docs/deep"),
                                      ("sym", "pkg/docs/deep/y", "../.."), ("sym", "pkg/docs/deep/x", "y/README"),
                                      ("hard", "pkg/copy", "pkg/README")]))
    target = tmp_path / "target"
    extract_archive(archive, target)
    assert (target / "pkg/docs/deep/x").read_text() == "hello"
    assert (target / "pkg/copy").read_text() == "hello" and not (target / "pkg/copy").is_symlink()


# ------------------------------------------------------------ fgbench's own writes in a dataset folder


@pytest.mark.parametrize("planted", [catalog.STEPS_DIR, catalog.DOWNLOADS_DIR, catalog.LOCK_FILE])
def test_fgbench_never_writes_through_a_link_in_the_dataset_folder(serve_dataset, tmp_path, planted):
    """A link planted where fgbench keeps its state (by an earlier tool, or a user) pointing
    outside: the download refuses to use it, naming it, and writes nothing out there."""
    files, _facts = cub_files(per_class=1)
    serve_dataset("cub200", {"CUB_200_2011.tgz": build("tar.gz", [("file", p, d) for p, d in files.items()])})
    loc = catalog.location("cub200")
    loc.mkdir(parents=True)
    outside = tmp_path / "outside"
    if planted == catalog.LOCK_FILE:
        outside.write_text("")
        os.symlink(outside, loc / planted)
    else:
        outside.mkdir()
        os.symlink(outside, loc / planted, target_is_directory=True)
    with pytest.raises(UserError, match=rf"{planted}: is a link.*never writes through links"):
        download.download_dataset("cub200")
    assert (list(outside.iterdir()) == []) if outside.is_dir() else outside.read_text() == ""
    assert catalog.status("cub200") != "ready"


def test_a_linked_ready_marker_does_not_make_a_dataset_ready(tmp_path):
    loc = catalog.location("cub200")
    loc.mkdir(parents=True)
    real = tmp_path / "elsewhere.json"
    real.write_text("{}")
    os.symlink(real, loc / catalog.READY_FILE)
    assert catalog.status("cub200") == "partial"


def test_a_plain_file_placed_by_fgbench_is_not_written_through_a_planted_link(tmp_path, patch_entry):
    """``_place`` of a plain (non-archive) file writes ``.<name>.tmp`` first: a link planted at
    that name is replaced, the file outside stays untouched."""
    from fgbench.data.catalog import Source

    loc = tmp_path / "flowers"
    loc.mkdir()
    outside = tmp_path / "outside.mat"
    outside.write_bytes(b"original")
    os.symlink(outside, loc / ".imagelabels.mat.tmp")
    src = tmp_path / "imagelabels.mat"
    src.write_bytes(b"new contents")
    source = Source("https://example.invalid/imagelabels.mat", "imagelabels.mat", size=len(b"new contents"))
    download._place(src, loc, source, move=False, progress=None, cancel=None, name="flowers102")
    assert (loc / "imagelabels.mat").read_bytes() == b"new contents"
    assert outside.read_bytes() == b"original"


# ----------------------------------------------------------------------------------- free space


def test_free_space_is_checked_before_a_download_naming_how_much(serve_dataset, monkeypatch):
    files, _facts = cub_files(per_class=1)
    serve_dataset("cub200", {"CUB_200_2011.tgz": build("tar.gz", [("file", p, d) for p, d in files.items()])})
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: _Usage(10))
    with pytest.raises(download.DownloadError, match=r"cub200: needs about .* free in .*only 10 B available"):
        download.download_dataset("cub200")


def test_free_space_is_checked_before_an_import_naming_how_much(tmp_path, monkeypatch):
    files, _facts = cub_files(per_class=1)
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(build("tar.gz", [("file", p, d) for p, d in files.items()]))
    monkeypatch.setattr(download, "check_file", lambda *a, **k: None)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: _Usage(10))
    with pytest.raises(download.DownloadError, match=rf"needs about {re.escape(catalog.format_bytes(archive.stat().st_size))} free .*to copy or "
                                                     r"extract CUB_200_2011\.tgz.*only 10 B available"):
        download.import_dataset("cub200", archive)
    assert not (catalog.location("cub200") / "CUB_200_2011").exists()


class _Usage:
    def __init__(self, free: int):
        self.total, self.used, self.free = free, 0, free


# ------------------------------------------------------------------ files that are not files


def test_deep_verification_names_a_fifo_without_opening_it(tmp_path):
    """A FIFO named like an image blocks whoever opens it; the deep check reports it unopened."""
    import threading

    from fgbench.data.images import find_corrupt_images

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    found: list = []
    t = threading.Thread(target=lambda: found.append(find_corrupt_images([str(fifo)], workers=1)), daemon=True)
    t.start()
    t.join(timeout=60)  # a hang guard, not a speed target
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the deep verification opened the FIFO")
    [(path, reason)] = found[0]
    assert path == str(fifo) and "not a regular file" in reason and "FIFO" in reason


@pytest.mark.parametrize("deep", [False, True])
def test_verify_names_each_image_that_is_not_a_file_on_hostile_storage(tmp_path, capsys, deep):
    """A dataset folder on hostile storage: a class folder that is a FIFO, a symlink loop in the
    tree, a 100-deep chain of folders, images that are a FIFO, a link to /dev/zero and a link to
    itself. ``data verify`` ends, and names each non-file once (training skips them with the same
    line); it used to say ``ok`` while ``fgbench run`` warned about them."""
    import threading

    from fakes.tiny_data import make_images

    from fgbench.cli import main

    root = tmp_path / "hd"
    make_images(root, {"train": 2, "test": 1})
    os.mkfifo(root / "train" / "zz_fifo_class")
    (root / "train" / "red" / "loop").symlink_to(".")
    chain = root / "train" / "blue"
    for _ in range(100):
        chain = chain / "d"
    chain.mkdir(parents=True)
    bad = [root / "train" / "red" / "fifo.png", root / "train" / "green" / "zero.jpg", root / "test" / "red" / "self.png"]
    os.mkfifo(bad[0])
    bad[1].symlink_to("/dev/zero")
    bad[2].symlink_to(bad[2].name)
    codes: list[int] = []
    argv = ["data", "verify", "folder", "--root", str(root)] + (["--deep"] if deep else [])
    t = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    t.start()
    t.join(timeout=120)  # a hang guard, not a speed target
    if t.is_alive():
        os.close(os.open(bad[0], os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("data verify opened the FIFO")
    out = capsys.readouterr()
    assert codes == [1] and "Traceback" not in out.err
    assert "folder: 3 classes, 6 train / 3 test images" in out.out and "folder: ok" not in out.out
    lines = [ln for ln in out.err.splitlines() if ln.strip() and not ln.startswith("verify:")]
    assert sorted(lines) == sorted(f"{p}: not a regular file (a FIFO, device or dangling link); training skips it"
                                   for p in bad)


@pytest.mark.parametrize("how", ["loop", "fifo", "dangling"])
def test_a_dataset_folder_that_is_not_a_folder_is_one_line_everywhere(fgbench_home, capsys, how):
    """``<data dir>/cifar10`` as a symlink loop made ``data list`` (and so the TUI's Datasets pane,
    which words the status the same way), ``data info`` and ``data verify`` tracebacks; as a loop,
    a FIFO or a broken link, ``data download`` died in ``mkdir`` with FileExistsError."""
    from fgbench.cli import main

    loc = catalog.location("cifar10")
    loc.parent.mkdir(parents=True, exist_ok=True)
    if how == "loop":
        loc.symlink_to(loc.name)
    elif how == "fifo":
        os.mkfifo(loc)
    else:
        loc.symlink_to("nowhere")
    word = "partial" if how == "loop" else "missing"  # something unusable is there / nothing is
    assert catalog.status_text("cifar10") == word
    assert main(["data", "list"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cifar10 ")]
    assert len(row) == 1 and f" {word} " in row[0]
    assert main(["data", "info", "cifar10"]) == 0 and f"status       {word}" in capsys.readouterr().out
    assert main(["data", "verify", "cifar10"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cifar10: ") and "Traceback" not in err
    assert main(["data", "download", "cifar10"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"{loc}: the dataset's folder is taken by something that is not a folder (a file, a FIFO or "
                   "a broken or looping link); move it away and run again")
    assert os.path.lexists(loc) and not loc.is_dir()  # left as it was


# ------------------------------------------------------------------------------- a full disk


@pytest.mark.parametrize("moment", ["extract", "index"])
def test_a_full_disk_during_a_download_is_one_line_and_a_rerun_finishes(serve_dataset, server, tmp_path,
                                                                        monkeypatch, moment):
    """The disk fills up while the archive is extracted, or while the index is written: one error
    naming the place and the free space, not ready, the verified archive kept; once there is room
    again the same command finishes without downloading again. A real tmpfs where one can be
    mounted, else writes that fail with ENOSPC at the same two points."""
    import errno
    import subprocess

    from fgbench import atomic
    from fgbench.data import index

    files, facts = cub_files(per_class=1)
    serve_dataset("cub200", {"CUB_200_2011.tgz": build("tar.gz", [("file", p, d) for p, d in files.items()])}, facts)
    data = tmp_path / "data"
    data.mkdir()
    real = tmpfs_works()
    if real:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)], check=True)
    monkeypatch.setenv("FGBENCH_DATA", str(data))
    filler = data / "filler"
    try:
        def fill():
            if real:
                with open(filler, "wb") as f:
                    try:
                        while True:
                            f.write(bytes(1 << 16))
                            f.flush()
                    except OSError as err:
                        assert err.errno == errno.ENOSPC
            elif moment == "extract":
                def no_room(self, name, n):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                monkeypatch.setattr(download._Extractor, "charge", no_room)
            else:
                def no_room_text(path, text):
                    raise atomic.DiskFullError(path)
                monkeypatch.setattr(atomic, "atomic_write_text", no_room_text)  # write_index imports it when called

        if moment == "extract":
            orig_fetch = download.fetch

            def fetch(*a, **k):
                out = orig_fetch(*a, **k)
                fill()
                return out

            monkeypatch.setattr(download, "fetch", fetch)
        else:
            orig_write = index.write_index

            def write_index(*a, **k):
                fill()
                return orig_write(*a, **k)

            monkeypatch.setattr(index, "write_index", write_index)
        with pytest.raises(download.DownloadError) as err:
            download.download_dataset("cub200")
        msg = str(err.value)
        assert "\n" not in msg and "full" in msg and " free" in msg and str(data) in msg
        assert catalog.status("cub200") != "ready"
        assert (catalog.location("cub200") / catalog.DOWNLOADS_DIR / "CUB_200_2011.tgz").is_file() or moment == "index"
        gets = len(server.gets("/cub200/CUB_200_2011.tgz"))
        monkeypatch.undo()  # room again, same catalog entry and mirror
        serve_dataset("cub200", {"CUB_200_2011.tgz": build("tar.gz", [("file", p, d) for p, d in files.items()])},
                      facts)
        monkeypatch.setenv("FGBENCH_DATA", str(data))
        filler.unlink(missing_ok=True)
        download.download_dataset("cub200")
        assert catalog.status("cub200") == "ready"
        assert len(server.gets("/cub200/CUB_200_2011.tgz")) == gets  # nothing downloaded twice
    finally:
        if real:
            subprocess.run(["umount", "-l", str(data)], check=False)

"""Safe extraction: members that would escape the target folder are refused by name."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from fgdata_builders import tar_bytes

from fgbench.data import catalog, download
from fgbench.data.download import UnsafeArchiveError, extract_archive


def _tar(tmp_path, members: list[tarfile.TarInfo | tuple[str, bytes]], name="evil.tar.gz"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
            else:
                tar.addfile(m)
    p = tmp_path / name
    p.write_bytes(buf.getvalue())
    return p


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _special(name: str, kind) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info


UNSAFE_TARS = [
    ([("ok.txt", b"fine"), ("../evil.txt", b"x")], "'../evil.txt'", "'..'"),
    ([("data/../../evil.txt", b"x")], "data/../../evil.txt", "'..'"),
    ([("/tmp/fgbench-evil.txt", b"x")], "/tmp/fgbench-evil.txt", "absolute path"),
    ([_link("link", "/etc")], "'link'", "absolute"),
    ([("d/keep.txt", b"k"), _link("d/up", "../../outside")], "'d/up'", "points outside"),
    ([_link("hard", "/etc/passwd", tarfile.LNKTYPE)], "'hard'", "absolute path"),
    ([_link("hard", "../x", tarfile.LNKTYPE)], "'hard'", "'..'"),
    ([_special("dev/null", tarfile.CHRTYPE)], "'dev/null'", "device file"),
    ([_special("dev/sda", tarfile.BLKTYPE)], "'dev/sda'", "device file"),
    ([_special("pipe", tarfile.FIFOTYPE)], "'pipe'", "FIFO"),
]


@pytest.mark.parametrize("members, member, why", UNSAFE_TARS)
def test_unsafe_tar_members_are_refused_by_name(tmp_path, members, member, why):
    archive = _tar(tmp_path, members)
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)
    assert member.strip("'") in str(err.value) and why.strip("'") in str(err.value)
    assert "evil.tar.gz" in str(err.value)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "outside").exists()
    assert list(target.iterdir()) == []  # nothing half-extracted, scratch folder removed


def _zip(tmp_path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]):
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return p


def _zip_link(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize(
    "entries, member, why",
    [
        ([("../evil.txt", b"x")], "../evil.txt", ".."),
        ([("/abs/evil.txt", b"x")], "/abs/evil.txt", "absolute"),
        ([_zip_link("up", "../../outside")], "up", "points outside"),
        ([_zip_link("etc", "/etc")], "etc", "absolute"),
    ],
)
def test_unsafe_zip_members_are_refused_by_name(tmp_path, entries, member, why):
    archive = _zip(tmp_path, entries)
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)
    assert member in str(err.value) and why in str(err.value)
    assert list(target.iterdir()) == []


def test_a_link_resolved_through_an_earlier_link_is_refused(tmp_path):
    # "a" -> "b" is fine on its own; "c" -> "a/../.." only escapes once "a" is followed
    archive = _tar(tmp_path, [("b/x.txt", b"x"), _link("a", "b/x.txt/.."), _link("c", "a/../..")])
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        extract_archive(archive, tmp_path / "target")


def test_safe_archives_extract_with_inside_links(tmp_path):
    archive = _tar(tmp_path, [("pkg/README", b"hello"), _link("pkg/docs/readme", "../README"),
                              _link("pkg/copy", "pkg/README", tarfile.LNKTYPE)], name="ok.tar.gz")
    target = tmp_path / "target"
    target.mkdir()
    (target / "pkg").mkdir()
    (target / "pkg" / "other.txt").write_text("kept")  # an earlier archive's files survive the merge
    extract_archive(archive, target)
    assert (target / "pkg" / "docs" / "readme").read_text() == "hello"
    assert (target / "pkg" / "docs" / "readme").is_symlink()
    assert (target / "pkg" / "copy").read_text() == "hello"
    assert (target / "pkg" / "other.txt").read_text() == "kept"


def test_zip_extracts(tmp_path):
    archive = _zip(tmp_path, [("a/b.txt", b"b"), ("a/", b"")])
    extract_archive(archive, tmp_path / "t")
    assert (tmp_path / "t" / "a" / "b.txt").read_bytes() == b"b"


def test_a_download_with_a_traversal_member_fails_and_is_not_ready(serve_dataset, tmp_path):
    archive = _tar(tmp_path, [("CUB_200_2011/images.txt", b""), ("../../../escaped.txt", b"x")])
    serve_dataset("cub200", {"CUB_200_2011.tgz": archive.read_bytes()})
    with pytest.raises(UnsafeArchiveError, match=r"refusing to extract '\.\./\.\./\.\./escaped\.txt'"):
        download.download_dataset("cub200")
    assert catalog.status("cub200") == "missing"  # the refused archive was deleted: nothing is left
    assert not (catalog.location("cub200") / "CUB_200_2011").exists()


def test_a_damaged_archive_is_a_clear_error(tmp_path):
    p = tmp_path / "broken.tar.gz"
    p.write_bytes(tar_bytes({"a.txt": b"x" * 5000})[:60])
    with pytest.raises(download.DownloadError, match="broken.tar.gz"):
        extract_archive(p, tmp_path / "t")


# ------------------------------------------- issue 21 item 7: never touch what it did not create


def _tree(root) -> dict[str, bytes | str]:
    import os

    out: dict[str, bytes | str] = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            out[rel] = ("link:" + os.readlink(p)) if os.path.islink(p) else "dir" if os.path.isdir(p) else open(p, "rb").read()
    return out


@pytest.mark.parametrize("members, existing", [
    # a file member named like the user's folder (it used to rmtree the folder)
    ([("ok/new.txt", b"n"), ("photos", b"i am a file")], "photos"),
    # a folder member where the user has a file
    ([("ok/new.txt", b"n"), ("notes.txt/inner", b"x")], "notes.txt"),
    # a file of the same name with other contents
    ([("ok/new.txt", b"n"), ("photos/cat.jpg", b"other bytes")], "photos/cat.jpg"),
    # a member named like the user's link
    ([("ok/new.txt", b"n"), ("shortcut", b"x")], "shortcut"),
])
def test_an_archive_never_replaces_or_deletes_what_the_target_already_holds(tmp_path, members, existing):
    target = tmp_path / "root"
    (target / "photos").mkdir(parents=True)
    (target / "photos" / "cat.jpg").write_bytes(b"the user's cat")
    (target / "notes.txt").write_text("the user's notes")
    (target / "shortcut").symlink_to("photos")
    before = _tree(target)
    archive = _tar(tmp_path, members, name="a.tar.gz")
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)
    assert repr(existing) in str(err.value) and "did not create" in str(err.value)
    assert _tree(target) == before  # nothing of the user's touched, nothing of the archive left


def test_an_archive_merges_beside_what_is_there_and_an_identical_file_is_kept(tmp_path):
    target = tmp_path / "root"
    (target / "photos").mkdir(parents=True)
    (target / "photos" / "cat.jpg").write_bytes(b"the user's cat")
    archive = _tar(tmp_path, [("photos/cat.jpg", b"the user's cat"), ("photos/dog.jpg", b"dog"), ("new/a", b"a")])
    extract_archive(archive, target)
    assert _tree(target) == {"photos": "dir", "photos/cat.jpg": b"the user's cat", "photos/dog.jpg": b"dog",
                             "new": "dir", "new/a": b"a"}
    extract_archive(archive, target)  # the same archive again (a retried import): nothing changes
    assert (target / "photos" / "dog.jpg").read_bytes() == b"dog"


def test_a_link_refused_once_merged_takes_back_everything_the_archive_brought(tmp_path):
    target = tmp_path / "root"
    target.mkdir()
    (target / "up").symlink_to("..")  # the user's link: leads out of the root
    (target / "mine.txt").write_text("kept")
    archive = _tar(tmp_path, [("pkg/a.txt", b"a"), _link("pkg/out", "../up/x")], name="b.tar.gz")
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        extract_archive(archive, target)
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt", "up"]


def test_data_import_fails_without_touching_an_existing_folder(tmp_path, patch_entry, capsys):
    from fgbench.cli import main

    root = tmp_path / "root"
    (root / "CUB_200_2011").mkdir(parents=True)
    (root / "CUB_200_2011" / "my_notes.txt").write_text("the user's")
    archive = _tar(tmp_path, [("CUB_200_2011", b"a file named like the folder")], name="CUB_200_2011.tgz")
    patch_entry("cub200", sources=(catalog.Source("https://example.invalid/CUB_200_2011.tgz", "CUB_200_2011.tgz"),))
    assert main(["data", "import", "cub200", str(archive), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    refused = [ln for ln in err.splitlines() if "refusing" in ln]
    assert len(refused) == 1 and "'CUB_200_2011'" in refused[0] and "did not create" in refused[0]
    assert "Traceback" not in err
    assert (root / "CUB_200_2011" / "my_notes.txt").read_text() == "the user's"


# ------------------------------- issue 22 item 11: built on tarfile's data filter (PEP 706)


HAS_FILTER = hasattr(tarfile, "data_filter")
needs_filter = pytest.mark.skipif(not HAS_FILTER, reason="this Python's tarfile has no data filter (the fallback runs)")


@needs_filter
def test_every_member_tar_or_zip_goes_through_tarfile_data_filter(tmp_path, monkeypatch):
    """The filter is the layer that refuses '..', absolute links and devices: each member of a tar
    and of a zip (described as the tar member it would be) is handed to it, links included."""
    seen: list[tuple[str, str, str]] = []
    real = tarfile.data_filter

    def spy(member, dest):
        seen.append((member.name, member.type.decode(), member.linkname))
        return real(member, dest)

    monkeypatch.setattr(tarfile, "data_filter", spy)
    extract_archive(_tar(tmp_path, [("a/b.txt", b"b"), _link("a/l", "b.txt")], name="ok.tar.gz"), tmp_path / "t1")
    assert seen == [("a/b.txt", "0", ""), ("a/l", "2", "b.txt")]
    seen.clear()
    extract_archive(_zip(tmp_path, [("a/", b""), ("a/b.txt", b"b"), _zip_link("a/l", "b.txt")]), tmp_path / "t2")
    assert seen == [("a/", "5", ""), ("a/b.txt", "0", ""), ("a/l", "2", "b.txt")]
    assert (tmp_path / "t2" / "a" / "l").read_bytes() == b"b" and (tmp_path / "t2" / "a" / "l").is_symlink()


def test_a_dotdot_that_stays_inside_is_the_filters_call_and_is_resolved(tmp_path):
    """Only a '..' that leads out is refused (the filter's verdict); ``pkg/sub/../README`` is ``pkg/README``."""
    archive = _tar(tmp_path, [("pkg/sub/../README", b"hello"), ("pkg/x/y/../../copy", b"c")], name="ok.tar.gz")
    extract_archive(archive, tmp_path / "t")
    assert _tree(tmp_path / "t") == {"pkg": "dir", "pkg/README": b"hello", "pkg/copy": b"c"}


def test_without_the_data_filter_every_hostile_archive_gets_the_same_refusal(tmp_path, monkeypatch):
    """Python 3.10.0-3.10.11 and 3.11.0-3.11.3 (Debian 12's system Python is 3.11.2) have no
    ``tarfile.data_filter``: the fallback refuses every hostile archive in the same words."""
    from test_data_hostile import HOSTILE, build

    def refusal(fmt: str, members: list[tuple]) -> str:
        archive = tmp_path / f"hostile.{fmt}"
        archive.write_bytes(build(fmt, members))
        target = tmp_path / "target"
        with pytest.raises(UnsafeArchiveError) as err:
            extract_archive(archive, target)
        assert list(target.iterdir()) == []
        return str(err.value)

    cases = [(fmt, members) for _case, members, _member, _why, fmts in HOSTILE for fmt in fmts]
    with_filter = [refusal(fmt, members) for fmt, members in cases]
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # on such a Python, both runs are the fallback's
    without = [refusal(fmt, members) for fmt, members in cases]
    assert without == with_filter
    assert len(cases) > 50 and len(set(without)) > 20  # every case ran, and they do not all say one thing


_PART = st.sampled_from(["a", "b", "..", "."])
_PATH = st.lists(_PART, min_size=1, max_size=5).map("/".join)
_TYPES = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
          tarfile.FIFOTYPE]


@needs_filter
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_PATH, kind=st.sampled_from(_TYPES), link=st.one_of(_PATH, _PATH.map(lambda p: "/" + p)))
@example(name="a/b", kind=tarfile.SYMTYPE, link="..")  # a symlink's target is relative to its own folder
@example(name="a/b", kind=tarfile.SYMTYPE, link="../..")
@example(name="a/b", kind=tarfile.LNKTYPE, link="..")  # a hard link's, to the archive's root
@example(name="a/b", kind=tarfile.LNKTYPE, link="a/..")
@example(name="a", kind=tarfile.SYMTYPE, link="/a")
@example(name="a/../..", kind=tarfile.REGTYPE, link="")
@example(name="a/..", kind=tarfile.DIRTYPE, link="")
@example(name="a", kind=tarfile.FIFOTYPE, link="")
def test_the_fallback_gives_the_data_filters_verdict_member_by_member(tmp_path, name, kind, link):
    """The fallback judges names alone; the filter resolves them against the (empty: no link is on
    disk while members are judged) scratch folder. Same member, same verdict, same words. Names
    with a leading '/' never reach either: fgbench refuses them first."""
    m = tarfile.TarInfo(name)
    m.type = kind
    if m.issym() or m.islnk():
        m.linkname = link
    root = str(tmp_path.resolve())
    assert download._lexical_verdict(m) == download._filter_verdict(m, root)


@pytest.mark.parametrize("name, why", [
    ("a/" * 500 + "x.jpg", "501 folders deep (at most 64)"),  # used to end in os.makedirs' RecursionError
    ("d/" + "n" * 2000 + ".jpg", "a name of 2006 characters (at most 1024)"),
], ids=["deep", "long"])
def test_a_name_too_deep_or_too_long_is_one_short_line(tmp_path, name, why):
    """What the filter does not bound: how deep and how long a member's name is."""
    archive = _tar(tmp_path, [("ok.txt", b"ok"), (name, b"x")])
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)
    msg = str(err.value)
    assert msg.endswith(why) and "\n" not in msg and len(msg) < 300
    assert msg.startswith(f"evil.tar.gz: refusing to extract {name[:100]!r}"[:-1] + "...")
    assert list(target.iterdir()) == []


def test_a_name_at_the_bounds_extracts(tmp_path):
    deep = "/".join(["d"] * 63) + "/x.txt"  # 64 components
    long = "/".join(["n" * 200] * 5) + "/" + "n" * 15 + ".txt"  # a component may be 255 bytes: five of 200
    assert len(long) == 1024
    extract_archive(_tar(tmp_path, [(deep, b"d"), (long, b"l")], name="ok.tar.gz"), tmp_path / "t")
    assert (tmp_path / "t" / deep).read_bytes() == b"d" and (tmp_path / "t" / long).read_bytes() == b"l"

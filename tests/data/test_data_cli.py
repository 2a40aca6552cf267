"""`fgbench data ...` as a user runs it: output, and the exit codes 0 / 1 / 2 / 130."""

from __future__ import annotations

import io
import socket

import pytest
from fgdata_builders import cub_files, tar_bytes

from fgbench import cli
from fgbench.data import catalog, download
from fgbench.data import index as data_index
from fgbench.cli.data import ProgressPrinter
from fgbench.data.download import Progress


def run(capsys, *argv):
    code = cli.main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cub(serve_dataset):
    files, facts = cub_files()
    serve_dataset("cub200", {"CUB_200_2011.tgz": tar_bytes(files)}, facts)
    return facts


def test_list_shows_every_dataset_with_status_and_path(capsys, fgbench_home):
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CLASSES", "TRAIN/TEST", "SIZE", "STATUS", "PATH"]
    for name in catalog.names():
        assert any(line.startswith(name + " ") for line in lines)
    cub = next(line for line in lines if line.startswith("cub200 "))
    assert "200" in cub and "5994/5794" in cub and "1.2 GB" in cub and "missing" in cub
    assert str(fgbench_home / "datasets" / "cub200") in cub


def test_info_shows_checksums_or_says_there_is_none(capsys):
    code, out, _ = run(capsys, "info", "cub200")
    assert code == 0 and "97eceeb196236b17998738112f37df78" in out and "status       missing" in out
    code, out, _ = run(capsys, "info", "stanford_cars")
    assert code == 0 and "no checksum" in out and "8144 train / 8041 test" in out


def test_unknown_dataset_is_bad_input(capsys):
    for argv in (("info", "nope"), ("download", "cub200", "nope"), ("verify", "nope"), ("remove", "nope", "--yes")):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "unknown dataset 'nope'" in err


def test_download_verify_remove_round_trip(capsys, cub):
    code, out, err = run(capsys, "download", "cub200")
    assert code == 0, err
    assert "cub200: ready in" in out and f"{cub['train']} train / {cub['test']} test" in out
    assert "download: cub200: CUB_200_2011.tgz" in err  # not a TTY: one line per step
    code, out, _ = run(capsys, "list")
    assert "ready" in next(line for line in out.splitlines() if line.startswith("cub200 "))
    code, out, _ = run(capsys, "verify", "cub200", "--deep")
    assert code == 0 and f"cub200: ok ({cub['train'] + cub['test']} images decoded)" in out
    code, out, _ = run(capsys, "info", "cub200")
    assert "prepared" in out and "by download" in out
    code, out, _ = run(capsys, "remove", "cub200", "--yes")
    assert code == 0 and catalog.status("cub200") == "missing"


def test_deep_verify_with_a_corrupt_image_fails_and_names_it(capsys, cub):
    download.download_dataset("cub200")
    victim = data_index.prepared_index("cub200").train[0][0]
    open(victim, "wb").write(b"\xff\xd8\xff\xe0broken")
    code, _, err = run(capsys, "verify", "cub200", "--deep")
    assert code == 1 and victim in err and "skip_corrupt" in err


def test_verify_of_a_missing_dataset_fails(capsys):
    code, _, err = run(capsys, "verify", "cub200")
    assert code == 1 and "fgbench data download cub200" in err


def test_download_failures_exit_1_with_the_url(capsys, cub, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("FGBENCH_MIRROR_CUB200", f"http://127.0.0.1:{port}/CUB_200_2011.tgz")
    code, _, err = run(capsys, "download", "cub200", "--retries", "0", "--timeout", "2")
    assert code == 1 and f"127.0.0.1:{port}" in err and "fgbench data import cub200" in err


def test_wrong_checksum_exits_1(capsys, serve_dataset):
    files, facts = cub_files()
    serve_dataset("cub200", {"CUB_200_2011.tgz": tar_bytes(files)}, facts, md5s={"CUB_200_2011.tgz": "f" * 32})
    code, _, err = run(capsys, "download", "cub200")
    assert code == 1 and "md5" in err


def test_not_downloadable_datasets_are_bad_input(capsys):
    code, _, err = run(capsys, "download", "intel_scenes")
    assert code == 2 and "fgbench data import intel_scenes" in err
    code, _, err = run(capsys, "download", "folder")
    assert code == 2


def test_interrupt_exits_130_and_says_it_resumes(capsys, cub, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "download_dataset", interrupted)
    code, _, err = run(capsys, "download", "cub200")
    assert code == 130 and "resume" in err


def test_import_and_its_errors(capsys, tmp_path, patch_entry):
    files, facts = cub_files()
    patch_entry("cub200", train_images=facts["train"], test_images=facts["test"], num_classes=3)
    code, _, err = run(capsys, "import", "cub200", str(tmp_path / "absent.tgz"))
    assert code == 2 and "no such file" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "import", "cub200", str(tmp_path / "empty"))
    assert code == 2 and "CUB_200_2011/images.txt" in err and "not found" in err
    archive = tmp_path / "CUB_200_2011.tgz"
    archive.write_bytes(tar_bytes(files))
    patch_entry("cub200", sources=(catalog.Source("https://example.invalid/CUB_200_2011.tgz", "CUB_200_2011.tgz"),))
    code, out, err = run(capsys, "import", "cub200", str(archive))
    assert code == 0, err
    assert "cub200: ready in" in out


def test_remove_asks_for_confirmation(capsys, cub, monkeypatch):
    download.download_dataset("cub200")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run(capsys, "remove", "cub200")
    assert code == 2 and "--yes" in err and catalog.status("cub200") == "ready"
    monkeypatch.setattr("sys.stdin", type("T", (io.StringIO,), {"isatty": lambda self: True})("n\n"))
    code, out, _ = run(capsys, "remove", "cub200")
    assert code == 0 and "kept" in out and catalog.status("cub200") == "ready"
    monkeypatch.setattr("sys.stdin", type("T", (io.StringIO,), {"isatty": lambda self: True})("y\n"))
    code, out, _ = run(capsys, "remove", "cub200")
    assert code == 0 and catalog.status("cub200") == "missing"


def test_tty_progress_is_one_redrawn_line_with_bar_speed_and_eta():
    buf = io.StringIO()
    p = ProgressPrinter(buf, tty=True)
    p(Progress("download", 50_000_000, 100_000_000, 5_000_000.0, 10.0, "cub200: CUB_200_2011.tgz"))
    p(Progress("download", 100_000_000, 100_000_000, 5_000_000.0, 0.0, "cub200: CUB_200_2011.tgz"))
    p(Progress("extract", 10, 100, 1.0, 90.0, "cub200: extracting"))
    p.close()
    text = buf.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 2  # a new line per step only
    assert "50.0%" in text and "5.0 MB/s" in text and "ETA 0:10" in text and "100.0 MB" in text


def test_synthetic_downloads_offline_and_verifies(capsys):
    code, out, err = run(capsys, "download", "synthetic")
    assert code == 0, err
    assert catalog.status("synthetic") == "ready"
    code, out, _ = run(capsys, "verify", "synthetic")
    entry = catalog.get("synthetic")
    assert code == 0 and f"{entry.train_images} train / {entry.test_images} test" in out

"""The download engine end to end against a local HTTP server: fetch, resume, verify, extract,
prepare, and what is left behind when a step fails or is interrupted."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from fgdata_builders import (
    aircraft_files,
    cifar10_files,
    cifar100_files,
    class_folder_files,
    cub_files,
    flowers_files,
    intel_zip,
    pets_archives,
    tar_bytes,
)

from fgbench.data import catalog, download
from fgbench.data import index as data_index
from fgbench.data.catalog import Source
from fgbench.data import progress as progress_mod
from fgbench.data.download import Cancelled, DownloadError
from fgbench.errors import UserError

CUB = "/cub200/CUB_200_2011.tgz"


def _cub(serve_dataset, **kw):
    files, facts = cub_files()
    data = tar_bytes(files)
    serve_dataset("cub200", {"CUB_200_2011.tgz": data}, facts, **kw)
    return data, facts


def test_cub_download_prepares_the_official_split_and_class_order(serve_dataset, server):
    data, facts = _cub(serve_dataset)
    seen = []
    loc = download.download_dataset("cub200", progress=seen.append)
    assert loc == catalog.location("cub200")
    assert catalog.status("cub200") == "ready"
    index = data_index.prepared_index("cub200")
    assert index.class_names == facts["classes"]  # classes.txt order, not sorted
    assert (len(index.train), len(index.test)) == (facts["train"], facts["test"])
    for path, label in index.train + index.test:
        assert os.path.isfile(path)
        assert f"/{label + 1:03d}.{facts['classes'][label]}/" in path
    stages = [p.stage for p in seen]
    assert stages.index("download") < stages.index("verify") < stages.index("extract") < stages.index("prepare")
    last_download = [p for p in seen if p.stage == "download"][-1]
    assert last_download.done_bytes == last_download.total_bytes == len(data)
    # the archive and the download folder are gone once it is ready; the images stay
    assert not (loc / catalog.DOWNLOADS_DIR).exists()
    assert (loc / "CUB_200_2011" / "images.txt").is_file()
    assert catalog.ready_info("cub200")["train_images"] == facts["train"]
    # a second call does nothing: no new request
    n = len(server.requests)
    download.download_dataset("cub200")
    assert len(server.requests) == n


def test_a_dropped_connection_resumes_with_a_range_request(serve_dataset, server):
    data, _ = _cub(serve_dataset)
    server.drop_once.add(CUB)
    download.download_dataset("cub200")
    ranges = server.gets(CUB)
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(data) // 2}-"  # continued from the half that arrived
    assert catalog.status("cub200") == "ready"


def test_a_server_that_ignores_range_restarts_the_file(serve_dataset, server):
    _cub(serve_dataset)
    server.drop_once.add(CUB)
    server.no_range.add(CUB)
    download.download_dataset("cub200")  # the md5 check passes: no spliced bytes
    assert server.gets(CUB)[1] is not None
    assert catalog.status("cub200") == "ready"


def test_a_wrong_checksum_fails_deletes_the_file_and_never_looks_ready(serve_dataset):
    _cub(serve_dataset, md5s={"CUB_200_2011.tgz": "0" * 32})
    with pytest.raises(DownloadError) as err:
        download.download_dataset("cub200")
    msg = str(err.value)
    assert "md5" in msg and "0" * 32 in msg and "fgbench data import cub200" in msg
    loc = catalog.location("cub200")
    # the bad file is gone and nothing else was kept: missing, not "partial"
    assert not (loc / catalog.DOWNLOADS_DIR).exists() or not list((loc / catalog.DOWNLOADS_DIR).iterdir())
    assert catalog.status("cub200") == "missing"
    with pytest.raises(UserError, match="not downloaded"):
        data_index.prepared_index("cub200")


def test_a_wrong_size_is_refused_before_downloading(serve_dataset, server, patch_entry):
    data, _ = _cub(serve_dataset)
    src = catalog.get("cub200").sources[0]
    patch_entry("cub200", sources=(Source(src.url, src.filename, md5=src.md5, size=len(data) + 5),))
    with pytest.raises(DownloadError, match=f"expects {len(data) + 5}"):
        download.download_dataset("cub200", retries=0)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offline_error_names_the_url_and_the_import_command(monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/CUB_200_2011.tgz"
    monkeypatch.setenv("FGBENCH_MIRROR_CUB200", url)
    with pytest.raises(DownloadError) as err:
        download.download_dataset("cub200", retries=1, timeout=2)
    msg = str(err.value)
    assert url in msg
    assert "fgbench data import cub200 /path/to/CUB_200_2011.tgz" in msg
    assert "FGBENCH_MIRROR_CUB200" in msg
    assert catalog.status("cub200") != "ready"


def test_a_404_falls_back_to_the_alternate_url(server, patch_entry):
    files, facts = cub_files()
    data = tar_bytes(files)
    good = server.add("/mirror2/CUB_200_2011.tgz", data)
    import hashlib

    patch_entry("cub200", sources=(Source(server.url("/gone/CUB_200_2011.tgz"), "CUB_200_2011.tgz",
                                          md5=hashlib.md5(data).hexdigest(), size=len(data), alternates=(good,)),),
                train_images=facts["train"], test_images=facts["test"], num_classes=3)
    download.download_dataset("cub200")
    assert server.gets("/gone/CUB_200_2011.tgz") == [None]  # a 404 is not retried
    assert catalog.status("cub200") == "ready"


def test_cancel_during_download_keeps_the_part_and_a_rerun_resumes(serve_dataset, server, monkeypatch):
    data, _ = _cub(serve_dataset)
    monkeypatch.setattr(download, "CHUNK", 256)
    monkeypatch.setattr(progress_mod, "PROGRESS_INTERVAL_S", 0.0)
    cancel = threading.Event()

    def progress(p):
        if p.stage == "download" and p.done_bytes >= 1024:
            cancel.set()

    with pytest.raises(Cancelled):
        download.download_dataset("cub200", progress=progress, cancel=cancel)
    part = catalog.location("cub200") / catalog.DOWNLOADS_DIR / "CUB_200_2011.tgz.part"
    have = part.stat().st_size
    assert 1024 <= have < len(data)
    assert catalog.status("cub200") == "partial"
    download.download_dataset("cub200")
    assert server.gets(CUB)[-1] == f"bytes={have}-"
    assert catalog.status("cub200") == "ready"


def test_an_interrupted_extraction_is_not_ready_and_a_rerun_skips_the_download(serve_dataset, server):
    _cub(serve_dataset)
    cancel = threading.Event()

    def progress(p):
        if p.stage == "extract":
            cancel.set()

    with pytest.raises(Cancelled):
        download.download_dataset("cub200", progress=progress, cancel=cancel)
    loc = catalog.location("cub200")
    assert catalog.status("cub200") == "partial"
    assert (loc / catalog.DOWNLOADS_DIR / "CUB_200_2011.tgz").is_file()  # verified, kept
    assert not (loc / "CUB_200_2011").exists()  # nothing half-extracted in place
    assert not [p for p in loc.iterdir() if p.name.startswith(".extract-")]
    n = len(server.gets(CUB))
    download.download_dataset("cub200")
    assert len(server.gets(CUB)) == n
    assert catalog.status("cub200") == "ready"


def test_a_failed_prepare_is_not_ready(serve_dataset, patch_entry):
    _cub(serve_dataset)
    patch_entry("cub200", train_images=5994)  # the real count: the tiny archive has fewer
    with pytest.raises(UserError, match="expected 5994 train images"):
        download.download_dataset("cub200")
    assert catalog.status("cub200") == "partial"


def test_another_process_holding_the_lock_is_reported(serve_dataset):
    _cub(serve_dataset)
    loc = catalog.location("cub200")
    with download._locked(loc):
        with pytest.raises(UserError, match="another fgbench process"):
            download.download_dataset("cub200")


def test_aircraft_variants_in_official_order(serve_dataset):
    files, facts = aircraft_files()
    serve_dataset("fgvc_aircraft", {"fgvc-aircraft-2013b.tar.gz": tar_bytes(files)}, facts)
    download.download_dataset("fgvc_aircraft")
    index = data_index.prepared_index("fgvc_aircraft")
    assert index.class_names == facts["classes"]
    assert "F-16A/B" in index.class_names
    assert (len(index.train), len(index.test)) == (facts["train"], facts["test"])
    assert all(os.path.isfile(p) for p, _ in index.train + index.test)


def test_class_folder_mirror_without_checksum_is_verified_by_counts(serve_dataset, patch_entry):
    files, facts = class_folder_files()
    serve_dataset("stanford_cars", {"Stanford-Cars-dataset.tar.gz": tar_bytes(files, pax_comment="0123abcd")},
                  facts, md5s={"Stanford-Cars-dataset.tar.gz": None}, sizes=False)
    download.download_dataset("stanford_cars")
    index = data_index.prepared_index("stanford_cars")
    assert index.class_names == facts["classes"]  # sorted folder names
    assert (len(index.train), len(index.test)) == (facts["train"], facts["test"])


def test_class_folder_mirror_with_wrong_counts_is_refused(serve_dataset, patch_entry):
    files, facts = class_folder_files()
    serve_dataset("stanford_cars", {"Stanford-Cars-dataset.tar.gz": tar_bytes(files)}, facts,
                  md5s={"Stanford-Cars-dataset.tar.gz": None}, sizes=False)
    patch_entry("stanford_cars", test_images=facts["test"] + 1)
    with pytest.raises(UserError, match=f"expected {facts['test'] + 1} test images, found {facts['test']}"):
        download.download_dataset("stanford_cars")
    assert catalog.status("stanford_cars") == "partial"


def test_cifar10_keeps_the_torchvision_layout(serve_dataset):
    files, facts = cifar10_files()
    serve_dataset("cifar10", {"cifar-10-python.tar.gz": tar_bytes(files)}, facts)
    loc = download.download_dataset("cifar10")
    index = data_index.prepared_index("cifar10")
    assert index.kind == "cifar"
    assert index.class_names == facts["classes"]
    assert (loc / "cifar-10-batches-py" / "data_batch_1").is_file()
    assert os.path.samefile(index.root, loc)
    info = catalog.ready_info("cifar10")
    assert (info["train_images"], info["test_images"]) == (facts["train"], facts["test"])


def test_cifar100_fine_labels(serve_dataset):
    files, facts = cifar100_files()
    serve_dataset("cifar100", {"cifar-100-python.tar.gz": tar_bytes(files)}, facts)
    download.download_dataset("cifar100")
    index = data_index.prepared_index("cifar100")
    assert index.kind == "cifar" and index.class_names == facts["classes"]


def test_pets_two_archives_class_ids_and_breed_names(serve_dataset):
    images, annotations, facts = pets_archives()
    serve_dataset("oxford_pets", {"images.tar.gz": images, "annotations.tar.gz": annotations}, facts)
    download.download_dataset("oxford_pets")
    index = data_index.prepared_index("oxford_pets")
    assert index.class_names == facts["classes"]
    assert (len(index.train), len(index.test)) == (facts["train"], facts["test"])
    assert all(p.endswith(".jpg") and os.path.isfile(p) for p, _ in index.train + index.test)
    label_of = {os.path.basename(p): y for p, y in index.train + index.test}
    assert label_of["american_bulldog_1.jpg"] == 1


def test_flowers_reads_labels_and_splits_from_mat_files(serve_dataset):
    labels = [1, 2, 3, 1, 2, 3, 1, 2, 3]
    files = flowers_files(labels, trnid=[1, 2, 3], valid=[4, 5, 6], tstid=[7, 8, 9])
    serve_dataset("flowers102", files, {"classes": ["001", "002", "003"], "train": 6, "test": 3})
    download.download_dataset("flowers102")
    index = data_index.prepared_index("flowers102")
    assert index.class_names == ["001", "002", "003"]
    assert [os.path.basename(p) for p, _ in index.train] == [f"image_{i:05d}.jpg" for i in range(1, 7)]
    assert [y for _, y in index.train] == [0, 1, 2, 0, 1, 2]
    assert [y for _, y in index.test] == [0, 1, 2]


def test_intel_is_never_downloaded_automatically():
    with pytest.raises(UserError, match="fgbench data import intel_scenes"):
        download.download_dataset("intel_scenes")


def test_import_intel_zip_with_nested_folders(tmp_path, patch_entry):
    data, facts = intel_zip()
    patch_entry("intel_scenes", train_images=facts["train"], test_images=facts["test"], num_classes=3)
    archive = tmp_path / "archive.zip"
    archive.write_bytes(data)
    download.import_dataset("intel_scenes", archive)
    index = data_index.prepared_index("intel_scenes")
    assert index.class_names == facts["classes"]
    assert (len(index.train), len(index.test)) == (facts["train"], facts["test"])
    assert not any("seg_pred" in p for p, _ in index.train + index.test)
    assert archive.is_file()  # the user's file is left alone


def test_import_an_extracted_folder_indexes_it_in_place_and_remove_keeps_it(tmp_path, patch_entry):
    files, facts = cub_files()
    for rel, data in files.items():
        p = tmp_path / "mine" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    patch_entry("cub200", train_images=facts["train"], test_images=facts["test"], num_classes=3)
    loc = download.import_dataset("cub200", tmp_path / "mine" / "CUB_200_2011")
    index = data_index.prepared_index("cub200")
    assert all(p.startswith(str((tmp_path / "mine").resolve())) for p, _ in index.train)
    assert not (loc / "CUB_200_2011").exists()  # nothing copied
    download.remove_dataset("cub200")
    assert catalog.status("cub200") == "missing"
    assert (tmp_path / "mine" / "CUB_200_2011" / "images.txt").is_file()


def test_import_checks_the_md5_of_an_official_archive(tmp_path, patch_entry):
    files, facts = cub_files()
    data = tar_bytes(files)
    import hashlib

    patch_entry("cub200", sources=(Source("https://example.invalid/CUB_200_2011.tgz", "CUB_200_2011.tgz",
                                          md5=hashlib.md5(data).hexdigest(), size=None),),
                train_images=facts["train"], test_images=facts["test"], num_classes=3)
    bad = tmp_path / "CUB_200_2011.tgz"
    bad.write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(UserError, match="md5"):
        download.import_dataset("cub200", bad)
    assert catalog.status("cub200") != "ready"
    good = tmp_path / "renamed.tgz"  # a single-archive dataset accepts another file name
    good.write_bytes(data)
    download.import_dataset("cub200", good)
    assert catalog.status("cub200") == "ready"


def test_import_one_of_several_files_is_partial_until_all_are_in(tmp_path, patch_entry):
    images, annotations, facts = pets_archives()
    import hashlib

    patch_entry("oxford_pets", sources=tuple(
        Source(f"https://example.invalid/{n}", n, md5=hashlib.md5(d).hexdigest()) for n, d in
        (("images.tar.gz", images), ("annotations.tar.gz", annotations))),
        train_images=facts["train"], test_images=facts["test"], num_classes=3)
    (tmp_path / "images.tar.gz").write_bytes(images)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "annotations.tar.gz").write_bytes(annotations)
    download.import_dataset("oxford_pets", tmp_path / "images.tar.gz")
    assert catalog.status("oxford_pets") == "partial"
    assert download.missing_files("oxford_pets") == ["annotations.tar.gz"]
    with pytest.raises(UserError, match="not one of the files"):
        other = tmp_path / "other.tar.gz"
        other.write_bytes(images)
        download.import_dataset("oxford_pets", other)
    download.import_dataset("oxford_pets", tmp_path / "dl")  # a folder holding the file
    assert catalog.status("oxford_pets") == "ready"


def test_remove_refuses_a_foreign_root_and_removes_ours(tmp_path, serve_dataset):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(UserError, match="does not look like a folder fgbench prepared"):
        download.remove_dataset("cub200", root=precious)
    assert (precious / "thesis.txt").is_file()
    _cub(serve_dataset)
    download.download_dataset("cub200")
    catalog.cache_dir("cub200").mkdir(parents=True)
    (catalog.cache_dir("cub200") / "x.u8").write_bytes(b"pixels")
    download.remove_dataset("cub200")
    assert catalog.status("cub200") == "missing"
    assert not catalog.location("cub200").exists()
    assert not catalog.cache_dir("cub200").exists()


def test_download_into_an_explicit_root(serve_dataset, tmp_path):
    _cub(serve_dataset)
    root = tmp_path / "big-disk" / "birds"
    download.download_dataset("cub200", root=root)
    assert catalog.status("cub200", root) == "ready"
    assert catalog.status("cub200") == "missing"
    assert data_index.prepared_index("cub200", root).train[0][0].startswith(str(root))


def test_import_an_extracted_cifar_folder(tmp_path, patch_entry):
    files, facts = cifar10_files()
    for rel, data in files.items():
        (tmp_path / "dl" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dl" / rel).write_bytes(data)
    patch_entry("cifar10", train_images=facts["train"], test_images=facts["test"])
    download.import_dataset("cifar10", tmp_path / "dl")
    index = data_index.prepared_index("cifar10")
    assert index.kind == "cifar" and os.path.samefile(index.root, tmp_path / "dl")
    assert download.verify_dataset("cifar10").counts == {"classes": 10, "train": facts["train"], "test": facts["test"]}


def test_a_truncated_archive_without_checksum_is_deleted_and_fetched_again(serve_dataset, server):
    files, facts = class_folder_files()
    good = tar_bytes(files)
    serve_dataset("stanford_cars", {"Stanford-Cars-dataset.tar.gz": good[: len(good) // 2]}, facts,
                  md5s={"Stanford-Cars-dataset.tar.gz": None}, sizes=False)
    with pytest.raises(download.DamagedArchiveError, match="fetches it again"):
        download.download_dataset("stanford_cars")
    loc = catalog.location("stanford_cars")
    assert not (loc / catalog.DOWNLOADS_DIR / "Stanford-Cars-dataset.tar.gz").exists()
    server.files["/stanford_cars/Stanford-Cars-dataset.tar.gz"] = good
    download.download_dataset("stanford_cars")
    assert catalog.status("stanford_cars") == "ready"


# ------------------------------------------ issue 21 item 8: stalls, size caps, cancel while trickling


def test_a_trickling_server_is_a_stall_with_one_line_and_the_part_is_kept(serve_dataset, server, monkeypatch, capsys):
    """A server sending a byte every 20 ms never trips the socket timeout; fewer than 1 KiB in
    0.5 s is a stall (the real window: 64 KiB in 60 s)."""
    from fgbench.cli import main

    data, _ = _cub(serve_dataset)
    server.slow[CUB] = 0.02
    monkeypatch.setattr(download, "STALL_WINDOW_S", 0.5)
    monkeypatch.setattr(download, "STALL_MIN_BYTES", 1024)
    code = main(["data", "download", "cub200"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "stalled" in ln]
    assert code != 0 and len(err) == 1
    assert "bytes in the last" in err[0] and "fgbench data import cub200" in err[0]
    assert len(server.gets(CUB)) == 1  # a stall is not retried against the same server
    part = catalog.location("cub200") / catalog.DOWNLOADS_DIR / "CUB_200_2011.tgz.part"
    assert 0 < part.stat().st_size < len(data)  # kept: a later download resumes from it
    assert catalog.status("cub200") == "partial"


def test_a_mirror_without_checksum_that_never_stops_is_capped_by_the_catalog(serve_dataset, server, patch_entry):
    files, facts = class_folder_files()
    serve_dataset("stanford_cars", {"Stanford-Cars-dataset.tar.gz": tar_bytes(files)}, facts,
                  md5s={"Stanford-Cars-dataset.tar.gz": None}, sizes=False)
    patch_entry("stanford_cars", download_bytes=200_000)  # the catalog's approximate size
    server.endless.add("/stanford_cars/Stanford-Cars-dataset.tar.gz")
    with pytest.raises(DownloadError, match="cannot fill the disk") as err:
        download.download_dataset("stanford_cars")
    assert "\n" not in str(err.value) and "more than 300.0 KB" in str(err.value)  # 1.5 x the catalog's 200 KB
    part = catalog.location("stanford_cars") / catalog.DOWNLOADS_DIR / "Stanford-Cars-dataset.tar.gz.part"
    assert not part.exists()  # the bytes past the cap are not kept
    assert catalog.status("stanford_cars") == "missing"


def test_cancel_stops_a_trickling_download_promptly(serve_dataset, server, monkeypatch):
    """Cancel is seen between the bytes that arrive, not only after a whole 1 MiB chunk (which a
    trickling server would take days to fill)."""
    _cub(serve_dataset)
    server.slow[CUB] = 0.01
    monkeypatch.setattr(progress_mod, "PROGRESS_INTERVAL_S", 0.0)
    cancel = threading.Event()

    def progress(p):
        if p.stage == "download" and p.done_bytes >= 20:
            cancel.set()

    with pytest.raises(Cancelled):
        download.download_dataset("cub200", progress=progress, cancel=cancel)
    part = catalog.location("cub200") / catalog.DOWNLOADS_DIR / "CUB_200_2011.tgz.part"
    assert 20 <= part.stat().st_size < 200

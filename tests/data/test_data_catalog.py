"""The catalog's facts, locations, status, mirrors, and the prepare helpers that need no network."""

from __future__ import annotations

import os
import pickle
import typing

import pytest
from fgdata_builders import class_folder_files, mat_bytes

from fgbench import settings
from fgbench.data import catalog, download, prepare
from fgbench.data import index as data_index
from fgbench.errors import UserError
from fgbench.recipe import DatasetName


def test_every_recipe_dataset_name_has_an_entry_and_nothing_else():
    assert catalog.names() == list(typing.get_args(DatasetName))
    assert [e.name for e in catalog.entries()] == catalog.names()


def test_published_checksums_and_sizes():
    cub = catalog.get("cub200").sources[0]
    assert (cub.md5, cub.size, cub.filename) == ("97eceeb196236b17998738112f37df78", 1150585339, "CUB_200_2011.tgz")
    air = catalog.get("fgvc_aircraft").sources[0]
    assert (air.md5, air.size) == ("d4acdd33327262359767eeaa97a4f732", 2753340328)
    assert catalog.get("cifar10").sources[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert catalog.get("cifar100").sources[0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    pets = {s.filename: s.md5 for s in catalog.get("oxford_pets").sources}
    assert pets == {"images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c", "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f"}
    flowers = {s.filename: s.md5 for s in catalog.get("flowers102").sources}
    assert flowers["102flowers.tgz"] == "52808999861908f626f3c1f4e79d11fa"
    e = catalog.get("cub200")
    assert (e.num_classes, e.train_images, e.test_images) == (200, 5994, 5794)
    a = catalog.get("fgvc_aircraft")
    assert (a.num_classes, a.train_images, a.test_images) == (100, 6667, 3333)


def test_stanford_cars_is_the_class_folder_mirror_verified_by_counts():
    cars = catalog.get("stanford_cars")
    assert (cars.num_classes, cars.train_images, cars.test_images) == (196, 8144, 8041)
    assert not cars.checksummed and all(s.md5 is None for s in cars.sources)
    assert "codeload.github.com/cyizhuo/Stanford-Cars-dataset" in cars.sources[0].url
    assert cars.sources[0].alternates  # main, then master


def test_intel_is_import_only():
    intel = catalog.get("intel_scenes")
    assert not intel.auto_download and intel.sources == ()
    assert "fgbench data import intel_scenes" in catalog.how_to_get(intel)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown dataset 'cub'; known: synthetic, folder, cifar10"):
        catalog.get("cub")


def test_location_default_env_and_root(fgbench_home, monkeypatch, tmp_path):
    assert catalog.location("cub200") == fgbench_home / "datasets" / "cub200"
    monkeypatch.setenv("FGBENCH_DATA", str(tmp_path / "big"))
    assert catalog.location("cub200") == tmp_path / "big" / "cub200"
    assert catalog.location("cub200", tmp_path / "here") == tmp_path / "here"


def test_status_missing_partial_ready():
    loc = catalog.location("cub200")
    assert catalog.status("cub200") == "missing"
    loc.mkdir(parents=True)
    (loc / catalog.LOCK_FILE).touch()
    assert catalog.status("cub200") == "missing"  # a lock alone is not a partial dataset
    (loc / catalog.DOWNLOADS_DIR).mkdir()
    assert catalog.status("cub200") == "partial"
    (loc / catalog.READY_FILE).write_text("{}")
    assert catalog.status("cub200") == "ready"


def test_prepared_index_tells_how_to_get_the_data():
    with pytest.raises(UserError, match=r"cub200: is not downloaded .*run `fgbench data download cub200`"):
        data_index.prepared_index("cub200")
    with pytest.raises(UserError, match=r"fgbench data import intel_scenes PATH"):
        data_index.prepared_index("intel_scenes")
    with pytest.raises(UserError, match="needs data.root"):
        data_index.prepared_index("folder")


def test_folder_entry_uses_the_users_folder(tmp_path):
    from fgdata_builders import jpeg_bytes

    for split in ("train", "val"):
        for c in ("b", "a"):
            (tmp_path / split / c).mkdir(parents=True)
            (tmp_path / split / c / "x.jpg").write_bytes(jpeg_bytes())
    assert catalog.status("folder", tmp_path) == "ready"
    index = data_index.prepared_index("folder", tmp_path)
    assert index.class_names == ["a", "b"] and len(index.test) == 2


# --------------------------------------------------------------------------- settings


def test_mirror_from_settings_file_and_env_wins(fgbench_home, monkeypatch):
    (fgbench_home / "settings.toml").write_text('[mirrors]\ncub200 = "https://m.example/CUB.tgz"\noxford_pets = "https://m.example/pets"\n')
    assert settings.mirror_for("cub200")[0] == "https://m.example/CUB.tgz"
    cub, pets = catalog.get("cub200"), catalog.get("oxford_pets")
    assert download.source_urls(cub, cub.sources[0]) == ("https://m.example/CUB.tgz",)
    # several files: the mirror is a base URL and the file names are appended
    assert download.source_urls(pets, pets.sources[1]) == ("https://m.example/pets/annotations.tar.gz",)
    monkeypatch.setenv("FGBENCH_MIRROR_CUB200", "http://127.0.0.1:1/x.tgz")
    assert settings.mirror_for("cub200") == ("http://127.0.0.1:1/x.tgz", "FGBENCH_MIRROR_CUB200")
    assert settings.mirror_for("cifar10") is None
    assert download.source_urls(catalog.get("cifar10"), catalog.get("cifar10").sources[0])[0].startswith("https://www.cs.toronto.edu")


def test_bad_settings_are_user_errors_naming_the_file(fgbench_home, monkeypatch):
    f = fgbench_home / "settings.toml"
    f.write_text("[mirrors\n")
    with pytest.raises(UserError, match=f"{f}: not valid TOML"):
        settings.mirror_for("cub200")
    f.write_text('[mirrors]\ncub200 = "ftp://x"\n')
    with pytest.raises(UserError, match=r"mirrors.cub200: 'ftp://x' is not an http"):
        settings.mirror_for("cub200")
    monkeypatch.setenv("FGBENCH_MIRROR_CUB200", "nonsense")
    with pytest.raises(UserError, match="FGBENCH_MIRROR_CUB200"):
        settings.mirror_for("cub200")


# ---------------------------------------------------------------------------- prepare


@pytest.mark.parametrize("kw", [{}, {"compressed": False}, {"storage": "uint8"}, {"big_endian": True},
                                {"big_endian": True, "compressed": False, "storage": "int16"}])
def test_read_mat_v5_vectors(tmp_path, kw):
    p = tmp_path / "m.mat"
    p.write_bytes(mat_bytes({"labels": [3, 1, 2, 77], "trnid": list(range(1, 12)), "x": [5]}, **kw))
    m = prepare.read_mat(p)
    assert m["labels"].values == [3, 1, 2, 77] and m["labels"].dims == (1, 4)
    assert m["trnid"].values == list(range(1, 12))
    assert m["x"].values == [5]


def test_read_mat_refuses_other_files(tmp_path):
    p = tmp_path / "bad.mat"
    p.write_bytes(b"\0\0\0\0" + b"x" * 200)
    with pytest.raises(prepare.PrepareError, match="not a MATLAB v5"):
        prepare.read_mat(p)
    v73 = bytearray(mat_bytes({"a": [1]}))
    v73[124:126] = (0x0200).to_bytes(2, "little")
    p.write_bytes(bytes(v73))
    with pytest.raises(prepare.PrepareError, match="v7.3"):
        prepare.read_mat(p)


def test_cifar_pickles_are_read_without_executing_anything(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    p = tmp_path / "batches.meta"
    p.write_bytes(pickle.dumps({"label_names": ["a"], "x": Evil()}))
    with pytest.raises(prepare.PrepareError, match="refusing global"):
        prepare.read_cifar_pickle(p)
    assert not (tmp_path / "pwned").exists()


def test_find_dir_is_breadth_first_and_skips_hidden(tmp_path):
    (tmp_path / ".downloads" / "x" / "train").mkdir(parents=True)
    (tmp_path / "a" / "b" / "train").mkdir(parents=True)
    found = prepare.find_dir(tmp_path, lambda p: (p / "train").is_dir())
    assert found == tmp_path / "a" / "b"
    assert prepare.find_dir(tmp_path, lambda p: (p / "train").is_dir(), max_depth=1) is None


def test_class_folders_refuse_test_classes_missing_from_train(tmp_path):
    files, _ = class_folder_files(prefix="m")
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "m" / "test" / "Unknown Car 1999").mkdir()
    with pytest.raises(prepare.PrepareError, match="classes not in train/: Unknown Car 1999"):
        prepare.prepare_class_folders(tmp_path)

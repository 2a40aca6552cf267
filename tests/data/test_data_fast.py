"""Draft decoding, the uint8 memory-mapped cache, and finding corrupt images."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from fgdata_builders import cub_files, jpeg_bytes, tar_bytes
from PIL import Image

from fgbench.data import download
from fgbench.data import index as data_index
from fgbench.data.fast import (
    CachedImageDataset,
    CorruptImageError,
    draft_request,
    find_corrupt_images,
    load_rgb,
)


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_bytes(jpeg_bytes(400, 300, seed=1))
    return p


@pytest.mark.parametrize("target, size", [(None, (400, 300)), (300, (400, 300)), (151, (400, 300)),
                                          (150, (200, 150)), (100, (200, 150)), (75, (100, 75)), (37, (50, 38))])
def test_draft_decodes_at_the_smallest_scale_still_covering_the_target(photo, target, size):
    im = load_rgb(photo, target)
    assert im.mode == "RGB"
    assert im.size == size
    if target:
        assert min(im.size) >= min(target, 300)


def test_draft_never_goes_below_the_target_for_odd_shapes(tmp_path):
    p = tmp_path / "tall.jpg"
    p.write_bytes(jpeg_bytes(123, 517, seed=2))
    for target in range(8, 130, 7):
        assert min(load_rgb(p, target).size) >= min(target, 123)
    assert draft_request((500, 375), 224) == (299, 224)


def test_png_and_grayscale_are_decoded_at_full_size_as_rgb(tmp_path):
    p = tmp_path / "g.png"
    Image.new("L", (64, 48), 7).save(p)
    im = load_rgb(p, 16)
    assert im.size == (64, 48) and im.mode == "RGB"
    g = tmp_path / "g.jpg"
    Image.new("L", (64, 48), 7).save(g)
    assert load_rgb(g, 16).mode == "RGB"


def test_crop_bottom_is_in_original_pixels_and_follows_the_draft(photo):
    assert load_rgb(photo, crop_bottom=20).size == (400, 280)
    assert load_rgb(photo, 70, crop_bottom=20).size == (100, 70)  # 1/4 scale: 5 rows
    # The draft scale is chosen for the cropped image: asking for 72 must not give 70 rows.
    w, h = load_rgb(photo, 72, crop_bottom=20).size
    assert min(w, h) >= 72 and (w, h) == (200, 140)  # 1/2 scale: 10 rows


def test_corrupt_images_raise_naming_the_file(tmp_path):
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(jpeg_bytes(64, 64, seed=3)[:300])
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg")
    for p in (trunc, junk):
        with pytest.raises(CorruptImageError) as err:
            load_rgb(p, 32)
        assert err.value.path == str(p) and str(p) in str(err.value)


def _write_images(d, n, size=(48, 36)):
    d.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        p = d / f"{i}.jpg"
        p.write_bytes(jpeg_bytes(*size, seed=i))
        items.append((str(p), i % 3))
    return items


def test_cache_builds_once_and_stores_exactly_the_lossless_decode(tmp_path):
    items = _write_images(tmp_path / "img", 7)
    ds = CachedImageDataset(items, 24, tmp_path / "cache", workers=2)
    assert ds.built_now and len(ds) == 7 and ds.skipped == 0
    im, label = ds[3]
    assert isinstance(im, Image.Image) and im.mode == "RGB" and label == 0
    # a shorter side of 24 from 48 x 36 is a 1/1 decode: 1/2 would give 18 < 24; nothing is resized
    assert im.size == (48, 36)
    full = Image.open(items[3][0]).convert("RGB")
    assert np.array_equal(np.asarray(im), np.asarray(full))
    again = CachedImageDataset(items, 24, tmp_path / "cache")
    assert not again.built_now and np.array_equal(np.asarray(again[3][0]), np.asarray(im))
    # another need is another cache; a need of 16 allows libjpeg's 1/2 scale, the same pixels as load_rgb
    small = CachedImageDataset(items, 16, tmp_path / "cache")
    assert small.built_now and small[3][0].size == (24, 18)
    assert np.array_equal(np.asarray(small[3][0]), np.asarray(load_rgb(items[3][0], 16)))
    # no temporary files left behind
    assert not [p for p in os.listdir(tmp_path / "cache") if ".tmp-" in p]


def test_cache_is_rebuilt_when_a_file_changes(tmp_path):
    items = _write_images(tmp_path / "img", 3)
    CachedImageDataset(items, 16, tmp_path / "cache")
    Image.new("RGB", (40, 40), (255, 0, 0)).save(items[0][0])
    os.utime(items[0][0], ns=(1, 1))
    ds = CachedImageDataset(items, 16, tmp_path / "cache")
    assert ds.built_now
    r, g, b = np.asarray(ds[0][0])[0, 0]
    assert r > 240 and g < 15 and b < 15  # the new red picture, not the old noise


def test_cache_stops_on_a_corrupt_image_or_skips_and_counts_it(tmp_path):
    items = _write_images(tmp_path / "img", 5)
    bad = items[2][0]
    with open(bad, "r+b") as f:
        f.truncate(200)
    with pytest.raises(CorruptImageError, match="2.jpg"):
        CachedImageDataset(items, 16, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.json"))  # nothing that looks built
    ds = CachedImageDataset(items, 16, tmp_path / "cache", skip_corrupt=True)
    assert ds.skipped == 1 and ds.skipped_paths == [bad]
    # the skipped image keeps its position and label (a split drawn over the list is the one the other
    # loaders draw); reading it raises as decoding it does, the others read their own pixels
    assert len(ds) == 5 and ds.items == items and ds.targets == [0, 1, 2, 0, 1]
    with pytest.raises(CorruptImageError, match="2.jpg"):
        ds[2]
    for i in (0, 1, 3, 4):
        im, label = ds[i]
        assert label == i % 3 and np.array_equal(np.asarray(im), np.asarray(load_rgb(items[i][0], 16)))
    # read again from its files (which hold only the decoded images, as they always did): the same list
    again = CachedImageDataset(items, 16, tmp_path / "cache", skip_corrupt=True)
    assert not again.built_now and len(again) == 5 and again.targets == [0, 1, 2, 0, 1]
    assert np.array_equal(np.asarray(again[3][0]), np.asarray(ds[3][0]))
    with pytest.raises(CorruptImageError, match="2.jpg"):
        again[2]
    # a cache built with skipping is refused to a caller that wants corrupt images to be errors
    with pytest.raises(CorruptImageError, match="2.jpg"):
        CachedImageDataset(items, 16, tmp_path / "cache")


def test_cache_pickles_without_its_memory_map(tmp_path):
    items = _write_images(tmp_path / "img", 4)
    ds = CachedImageDataset(items, 16, tmp_path / "cache")
    ds[0]
    assert ds._data is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._data is None
    assert np.array_equal(np.asarray(clone[1][0]), np.asarray(ds[1][0]))
    assert len(pickle.dumps(ds)) < 20_000


def test_cache_works_in_a_dataloader_with_workers(tmp_path):
    import torch
    from torchvision.transforms import v2

    items = _write_images(tmp_path / "img", 6)
    tf = v2.Compose([v2.ToImage(), v2.Resize((16, 16)), v2.ToDtype(torch.float32, scale=True)])
    ds = CachedImageDataset(items, 16, tmp_path / "cache", transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(3, 3, 16, 16)] * 2
    assert batches[0][1].tolist() == [0, 1, 2]


def test_find_corrupt_images_lists_only_the_bad_ones(tmp_path):
    items = _write_images(tmp_path / "img", 6)
    with open(items[4][0], "r+b") as f:
        f.truncate(150)
    (tmp_path / "img" / "x.jpg").write_bytes(b"\xff\xd8garbage")
    paths = [p for p, _ in items] + [str(tmp_path / "img" / "x.jpg")]
    seen = []
    bad = find_corrupt_images(paths, progress=seen.append, workers=2)
    assert [p for p, _ in bad] == [items[4][0], str(tmp_path / "img" / "x.jpg")]
    assert seen[-1].done_bytes == len(paths) and seen[-1].unit == "images"


def test_deep_verify_finds_a_corrupt_jpeg_in_a_prepared_dataset(serve_dataset):
    files, facts = cub_files()
    serve_dataset("cub200", {"CUB_200_2011.tgz": tar_bytes(files)}, facts)
    download.download_dataset("cub200")
    assert download.verify_dataset("cub200", deep=True).ok
    victim = data_index.prepared_index("cub200").test[1][0]
    with open(victim, "r+b") as f:
        f.truncate(100)
    shallow = download.verify_dataset("cub200")
    assert shallow.ok  # counts and files are fine: only decoding finds it
    deep = download.verify_dataset("cub200", deep=True)
    assert not deep.ok and [p for p, _ in deep.corrupt] == [victim]
    assert any(victim in p for p in deep.problems)
    os.remove(data_index.prepared_index("cub200").train[0][0])
    assert "1 indexed image(s) missing" in download.verify_dataset("cub200").problems[0]


def test_verify_reports_a_dataset_that_is_not_ready():
    report = download.verify_dataset("cub200")
    assert not report.ok and "fgbench data download cub200" in report.problems[0]


def test_jpeg_builder_sanity():
    assert Image.open(io.BytesIO(jpeg_bytes(10, 8))).size == (10, 8)

"""Splits, per-epoch order, augmentation seeding, transforms, the device loader, corrupt images."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from PIL import Image

from fgbench.data import loaders as L
from fgbench.data import synthetic
from fgbench.data import transforms as T
from fgbench.data.index import folder_index
from fgbench.errors import UserError
from fgbench.recipe import AugmentConfig, DataConfig


def test_stratified_split_is_per_class_seeded_and_disjoint():
    labels = [0] * 50 + [1] * 30 + [2] * 3 + [3] * 1
    train, val = L.stratified_split(labels, 0.2, seed=7)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(len(labels)))
    counts = Counter(labels[i] for i in val)
    assert counts == {0: 10, 1: 6, 2: 1}  # round(n*f); >=1 for a class of >=2; never a whole class
    assert L.stratified_split(labels, 0.2, seed=7) == (train, val)
    assert L.stratified_split(labels, 0.2, seed=8)[1] != val
    assert L.stratified_split(labels, 0.0, seed=7) == (list(range(len(labels))), [])


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch():
    s = L.EpochBatchSampler(23, 5, seed=3, drop_last=True)
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 4 and all(len(b) == 5 for b in full) and all(e == 2 for b in full for e, _ in b)
    s.set_epoch(2, start_batch=1)
    assert list(s) == full[1:] and len(s) == 3
    s.set_epoch(3)
    assert list(s) != full
    s2 = L.EpochBatchSampler(23, 5, seed=3, drop_last=False)
    assert s2.batches_per_epoch() == 5


def test_augmentation_is_seeded_per_sample_and_leaves_the_global_rng_alone(tiny_folder):
    index = folder_index(tiny_folder)
    data = DataConfig(dataset="folder", root=str(tiny_folder), train_size=16, train_crop="pad_crop", crop_padding=4,
                      test_crop="none")
    aug = AugmentConfig(hflip=True, randaugment_ops=2, random_erasing=0.5)
    ds = L.TrainDataset(L.FileSource(index.train), list(range(len(index.train))), T.train_transform(data, aug), 11, None)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = ds[(4, 7)][0]
    assert torch.equal(torch.get_rng_state(), before)  # main process: fork_rng
    torch.manual_seed(123)
    b = ds[(4, 7)][0]
    assert torch.equal(a, b)
    assert not torch.equal(a, ds[(5, 7)][0])  # another epoch, another augmentation


def test_worker_and_main_process_loading_give_the_same_batches(tiny_folder):
    index = folder_index(tiny_folder)
    aug = AugmentConfig(hflip=True, trivialaugment=True)
    out = []
    for workers in (0, 1):
        data = DataConfig(dataset="folder", root=str(tiny_folder), train_size=16, train_crop="pad_crop",
                          test_crop="none", workers=workers, batch_size=8)
        ds = L.TrainDataset(L.FileSource(index.train), list(range(40)), T.train_transform(data, aug), 5, None)
        loader = L.WorkerTrainLoader(ds, 8, 5, data, torch.device("cpu"))
        out.append([x for x, _, _ in loader.batches(epoch=3, start_batch=2)])
    assert len(out[0]) == 3
    assert all(torch.equal(a, b) for a, b in zip(*out))


def test_one_worker_pool_serves_training_and_evaluation_across_epochs(tiny_folder):
    """Training epochs and evaluations interleaved on the stage's one persistent pool give what
    separate, fresh loaders give, and the workers are started once."""
    index = folder_index(tiny_folder)
    aug = AugmentConfig(hflip=True)
    data = DataConfig(dataset="folder", root=str(tiny_folder), train_size=16, train_crop="pad_crop",
                      test_crop="none", workers=1, batch_size=8)
    src = L.FileSource(index.train)
    etf = T.test_transform(data)
    ev = L.EvalDataset(src, list(range(10)), etf, None)
    ds = L.TrainDataset(src, list(range(40)), T.train_transform(data, aug), 5, None)
    pooled = L.WorkerTrainLoader(ds, 8, 5, data, torch.device("cpu"), evals={"test": ev}, eval_batch_size=4)
    test = L.PooledEvalLoader(pooled, "test", len(ev))
    got = []
    for epoch in (1, 2):
        got.append([x for x, _, _ in pooled.batches(epoch)])
        got.append([x for x, _, _ in test.batches()])
    pids = pooled.loader._iterator._workers
    assert len(pids) == 1 and all(w.is_alive() for w in pids)
    fresh_data = data.model_copy(update={"workers": 0})
    for epoch, (train_b, test_b) in zip((1, 2), zip(got[::2], got[1::2])):
        ref = L.WorkerTrainLoader(ds, 8, 5, fresh_data, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(train_b, [x for x, _, _ in ref.batches(epoch)]))
        assert [len(b) for b in test_b] == [4, 4, 2]
        ref_test = L.WorkerEvalLoader(ev, 4, fresh_data, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(test_b, [x for x, _, _ in ref_test.batches()]))
    assert not torch.equal(got[0][0], got[2][0])  # another epoch, another order
    pooled.close()
    assert not any(w.is_alive() for w in pids)


@pytest.mark.parametrize("crop,normalize,aug", [
    ("pad_crop", "imagenet", AugmentConfig(hflip=True)),
    ("random_resized", "none", AugmentConfig(hflip=True, random_erasing=0.5)),
    ("resize", "imagenet", AugmentConfig(hflip=True, trivialaugment=True)),
])
def test_the_fused_tensor_step_gives_the_same_bits_as_torchvision(tiny_folder, crop, normalize, aug):
    index = folder_index(tiny_folder)
    data = DataConfig(train_size=16, train_crop=crop, normalize=normalize)
    tf = T.train_transform(data, aug)
    fast = L.fast_transform(tf)
    assert any(isinstance(t, L.ToNormalizedTensor) for t in fast.transforms)
    assert not any(isinstance(t, (T.v2.ToImage, T.v2.Normalize)) for t in fast.transforms)
    src = L.FileSource(index.train)
    for i in range(6):
        img = src.load(i)
        torch.manual_seed(i)
        a = tf(img)
        torch.manual_seed(i)
        b = fast(img)
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
    ev = T.test_transform(data)
    assert torch.equal(ev(src.load(0)), L.fast_transform(ev)(src.load(0)))


@pytest.mark.parametrize("crop,extra,shape", [
    ("random_resized", {}, (3, 12, 12)),
    ("pad_crop", {"crop_padding": 4}, (3, 12, 12)),
    ("resize_crop", {"train_resize": (20, 24), "crop_padding": 2}, (3, 12, 12)),
    ("resize", {}, (3, 12, 12)),
])
def test_train_crop_policies(crop, extra, shape):
    data = DataConfig(train_size=12, train_crop=crop, **extra)
    img = Image.new("RGB", (30, 20), (200, 100, 50))
    x = T.train_transform(data, AugmentConfig(rotation=10, random_erasing=1.0))(img)
    assert tuple(x.shape) == shape and x.dtype == torch.float32


def test_randaugment_policy_and_position():
    from torchvision.transforms import v2

    from fgbench.data.randaugment16 import RandAugment16

    data = DataConfig(train_size=12, train_crop="resize")
    after = T.train_transform(data, AugmentConfig(randaugment_ops=3, randaugment_magnitude=15)).transforms
    assert isinstance(after[0], v2.Resize) and isinstance(after[2], v2.RandAugment)  # resize, flip, policy
    hoya = AugmentConfig(randaugment_ops=3, randaugment_magnitude=15, randaugment_policy="ildoonet16",
                         randaugment_before_resize=True)
    steps = T.train_transform(data, hoya).transforms
    assert isinstance(steps[0], RandAugment16) and isinstance(steps[1], v2.Resize)
    assert (steps[0].num_ops, steps[0].magnitude, steps[0].max_magnitude) == (3, 15, 30)
    # on the image as loaded (here 30x20, not yet 12x12): the 16-op policy needs PIL in, gives PIL out
    img = Image.new("RGB", (30, 20), (200, 100, 50))
    torch.manual_seed(0)
    assert tuple(T.train_transform(data, hoya)(img).shape) == (3, 12, 12)


def test_test_policies_and_normalization():
    img = Image.new("RGB", (40, 30), (255, 0, 128))
    ratio = T.test_transform(DataConfig(test_size=16, test_crop="ratio", test_resize_ratio=1.25))
    assert tuple(ratio(img).shape) == (3, 16, 16)
    assert T.test_geometry(DataConfig(test_size=224, test_crop="ratio"))[0].size == [255]  # SimpleClassification
    fixed = T.test_transform(DataConfig(test_size=16, test_crop="fixed", test_resize=(24, 24)))
    assert tuple(fixed(img).shape) == (3, 16, 16)
    assert tuple(T.test_transform(DataConfig(test_size=16, test_crop="resize"))(img).shape) == (3, 16, 16)
    none = T.test_transform(DataConfig(test_crop="none", normalize="none"))(img)
    assert tuple(none.shape) == (3, 30, 40) and none[0, 0, 0].item() == pytest.approx(1.0)
    cifar = T.test_transform(DataConfig(dataset="cifar10", test_crop="none", normalize="dataset"))(img)
    assert cifar[0, 0, 0].item() == pytest.approx((1.0 - 0.4914) / 0.2023, rel=1e-5)
    explicit = DataConfig(normalize="explicit", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), test_crop="none")
    assert T.test_transform(explicit)(img)[0, 0, 0].item() == pytest.approx(2.0)
    assert T.normalization(DataConfig(normalize="learned")) is None
    with pytest.raises(UserError, match="data.normalize"):
        T.normalization(DataConfig(dataset="folder", root="/x", normalize="dataset"))


def test_device_loader_crops_flips_and_normalizes_in_batches():
    n, size, pad = 12, 8, 2
    x = torch.arange(n * 3 * size * size, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, 3, size, size)
    y = torch.arange(n)
    data = DataConfig(train_size=size, train_crop="pad_crop", crop_padding=pad, normalize="none", batch_size=4)
    loader = L.DeviceTrainLoader(x, y, 4, seed=9, data=data, augment=AugmentConfig(hflip=True), size=size,
                                 device=torch.device("cpu"))
    batches = list(loader.batches(epoch=1))
    assert len(batches) == 3
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(n))
    from torchvision.transforms.v2 import functional as TF

    # exactly what the standard loader's ToDtype(float32, scale=True) makes of the padded images
    padded = TF.to_dtype(torch.nn.functional.pad(x, (pad,) * 4), torch.float32, scale=True)
    for xb, yb, bad in batches:
        assert bad == () and xb.shape == (4, 3, size, size)
        for img, label in zip(xb, yb):
            src = padded[label]
            options = [src[:, dy:dy + size, dx:dx + size] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
            assert any(torch.equal(img, o) or torch.equal(img, o.flip(2)) for o in options)
    again = list(loader.batches(epoch=1, start_batch=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[1:], again))


def test_device_loader_refuses_what_it_cannot_do():
    with pytest.raises(UserError, match="data.train_crop"):
        L.check_device_loader(DataConfig(loader="device"), AugmentConfig())
    with pytest.raises(UserError, match="augment.randaugment_ops"):
        L.check_device_loader(DataConfig(loader="device", train_crop="pad_crop"), AugmentConfig(randaugment_ops=2))


def test_randaugment_before_resize_refuses_the_cached_loader():
    from types import SimpleNamespace

    aug = AugmentConfig(randaugment_ops=2, randaugment_before_resize=True)
    with pytest.raises(UserError, match="augment.randaugment_before_resize: the cached loader"):
        L.build_loaders(SimpleNamespace(train=list(range(64)), loader="cached"), DataConfig(loader="cached"), aug,
                        train_size=16, test_size=16, batch_size=8, seed=0, device=torch.device("cpu"))


def test_the_loader_choice_is_made_and_checked_once_when_the_splits_are_loaded(tiny_folder):
    """``load_splits`` (the run plan) decides the loader and is where an explicit device loader the
    recipe cannot use is refused; the stage loaders follow ``splits.loader`` without asking again."""
    index = folder_index(tiny_folder)
    data = DataConfig(dataset="folder", root=str(tiny_folder), train_size=16, test_size=16, train_crop="pad_crop",
                      test_crop="ratio", loader="device", val_fraction=0.0, batch_size=8)
    aug = AugmentConfig(randaugment_ops=2)
    with pytest.raises(UserError) as err:
        L.load_splits(index, data, augment=aug)
    assert str(err.value) == ('augment.randaugment_ops: not available with data.loader = "device"; '
                              'use data.loader = "standard"')
    # the stage loaders build what the splits say: a standard choice gets the worker loader even
    # though this DataConfig still names the device loader
    splits = L.load_splits(index, data.model_copy(update={"loader": "standard"}), augment=aug)
    loaders = L.build_loaders(splits, data, aug, train_size=16, test_size=16, batch_size=8, seed=0,
                              device=torch.device("cpu"))
    try:
        assert isinstance(loaders.train, L.WorkerTrainLoader)
    finally:
        loaders.train.close()


def test_corrupt_images_become_markers_and_are_dropped_by_collate(tmp_path):
    good = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    src = L.FileSource([(str(good), 0), (str(bad), 1)])
    ds = L.EvalDataset(src, [0, 1], T.test_transform(DataConfig(test_crop="none")), None)
    assert isinstance(ds[1], L.Corrupt) and ds[1].path == str(bad)
    x, y, paths = L.collate([ds[0], ds[1]])
    assert x.shape == (1, 3, 8, 8) and y.tolist() == [0] and paths == (str(bad),)


def test_synthetic_generation_is_deterministic_and_atomic(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    synthetic.generate(a, train_per_class=2, test_per_class=1, size=16)
    synthetic.generate(b, train_per_class=2, test_per_class=1, size=16)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 30
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert sorted(d.name for d in (a / "train").iterdir()) == sorted(synthetic.CLASS_NAMES)

    # an interrupted generation never looks ready, and leaves nothing at the target
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", boom)
    target = tmp_path / "syn"
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_synthetic(target)
    assert not synthetic.is_ready(target) and not target.exists()
    assert list(tmp_path.glob(".syn.*")) == []


def _jpeg_folder(root, sizes):
    import numpy as np

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(d / f"{i}.jpg", quality=80)
    return root


def test_auto_loader_picks_device_cached_or_standard_and_says_why(tmp_path, tiny_folder, monkeypatch):
    def choose(root, epochs=3, **data):
        d = DataConfig(dataset="folder", root=str(root), train_size=16, test_size=16, test_crop="none", **data)
        return L.choose_loader(folder_index(root), d, AugmentConfig(hflip=True), epochs=epochs,
                               cache_root=tmp_path / "cache")

    # same-size PNGs, pad-and-crop: the whole split fits in memory
    c = choose(tiny_folder, train_crop="pad_crop")
    assert c.kind == "device" and "fit the memory budget" in c.reason
    assert choose(tiny_folder, train_crop="pad_crop", loader="standard").kind == "standard"
    # RandomResizedCrop is not a device-loader transform; PNGs gain nothing from a cache
    c = choose(tiny_folder, train_crop="random_resized")
    assert c.kind == "standard" and "data.train_crop" in c.reason and "not JPEGs" in c.reason
    jpegs = _jpeg_folder(tmp_path / "jpegs", [(40, 30), (30, 40), (40, 30)])
    c = choose(jpegs, train_crop="random_resized")
    assert c.kind == "cached" and "JPEGs decoded every epoch" in c.reason
    assert choose(jpegs, epochs=1, train_crop="random_resized").kind == "standard"
    # images of different sizes cannot be pad-cropped from one stack; too little memory: not device
    assert choose(jpegs, train_crop="pad_crop").kind == "cached"
    monkeypatch.setattr(L, "memory_budget", lambda device=None: 1000)
    c = choose(tiny_folder, train_crop="pad_crop")
    assert c.kind == "standard" and "exceed the memory budget" in c.reason


def test_device_loader_pad_crops_same_size_images_as_they_are(tiny_folder):
    """The device loader stacks the images the standard pad-and-crop reads (no resize first), and
    its evaluation tensors are the standard loader's, bit for bit."""
    index = folder_index(tiny_folder)
    data = DataConfig(dataset="folder", root=str(tiny_folder), train_size=16, test_size=16, train_crop="pad_crop",
                      test_crop="ratio", loader="device", val_fraction=0.0, batch_size=8)
    splits = L.load_splits(index, data)
    assert splits.loader == "device"
    assert L._device_train_geometry(splits, data, 16) == []
    loaders = L.build_loaders(splits, data, AugmentConfig(), train_size=16, test_size=16, batch_size=8, seed=0,
                              device=torch.device("cpu"))
    etf = T.test_transform(data)
    xb, yb, _ = next(iter(loaders.test.batches()))
    for k in range(3):
        assert torch.equal(xb[k], etf(splits.test_source.load(k)))
    assert loaders.test.batch_size == 16  # twice the training batch


def test_the_device_loaders_memory_budget_comes_from_psutil(monkeypatch):
    """A quarter of the memory available (psutil: portable, no /proc parsing), at most 4 GiB."""
    import types

    import psutil

    from fgbench.data import loaders as L

    for available, budget in ((8 * 2**30, 2 * 2**30), (40 * 2**30, 4 * 2**30), (1000, 250)):
        monkeypatch.setattr(psutil, "virtual_memory", lambda a=available: types.SimpleNamespace(available=a))
        assert L.memory_budget() == budget

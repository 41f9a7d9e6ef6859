"""The loaders read files written here in the real on-disk formats."""

from __future__ import annotations

import hashlib
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10

from robustness import data
from robustness.data import augment, dataset_info, load_dataset, loader_to_tensors, make_loader
from robustness.errors import DataNotFoundError, InvalidArgument


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_idx_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, 28, 28)) for s, n in (("train", 12), ("t10k", 5))}
    labels = {s: rng.integers(0, 10, len(images[s])) for s in images}
    for split, pixels in images.items():
        _write_idx(raw / f"{split}-images-idx3-ubyte", pixels)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    for train, split in ((True, "train"), (False, "t10k")):
        ds = load_dataset("mnist", train=train, root=tmp_path)
        assert len(ds) == len(images[split])
        x, y = ds[3]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        assert torch.allclose(x[0], torch.from_numpy(images[split][3] / 255.0).float())
        assert y == labels[split][3]


def write_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int, test_size: int,
                  pixels: Callable[[np.ndarray], np.ndarray] | None = None, seed: int = 1) -> dict[str, dict]:
    """CIFAR10's python batches under ``root/cifar-10-batches-py``: 5 training batches of ``per_batch``
    images and a test batch of ``test_size``, random labels, pixels random or ``pixels(labels)`` (N x 3072);
    torchvision's MD5 checks are pointed at these files."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, test_size if name == "test_batch" else per_batch)
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8) if pixels is None else pixels(labels)
        batches[name] = {"data": data, "labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})
    return batches


def test_cifar10_reads_python_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = write_cifar10(tmp_path, monkeypatch, per_batch=4, test_size=4)
    train, test = load_dataset("cifar10", True, tmp_path), load_dataset("cifar10", False, tmp_path)
    assert (len(train), len(test)) == (20, 4)
    x, y = test[2]
    expected = torch.from_numpy(batches["test_batch"]["data"][2].reshape(3, 32, 32) / 255.0).float()
    assert x.shape == (3, 32, 32) and torch.allclose(x, expected)
    assert y == batches["test_batch"]["labels"][2]


def test_augment_crops_and_flips_like_the_per_image_reference() -> None:
    """Against a straightforward loop over the images with the same draws: pad, slice, maybe flip."""
    images = torch.rand(16, 3, 8, 6)
    out = augment(images, torch.Generator().manual_seed(5), padding=2)
    draws = torch.Generator().manual_seed(5)
    top, left = torch.randint(0, 5, (16,), generator=draws), torch.randint(0, 5, (16,), generator=draws)
    flip = torch.rand(16, generator=draws) < 0.5
    for i in range(16):
        crop = torch.nn.functional.pad(images[i], (2, 2, 2, 2))[:, top[i]:top[i] + 8, left[i]:left[i] + 6]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop), i
    assert 0 < flip.sum() < 16 and len(set(zip(top.tolist(), left.tolist(), strict=True))) > 8


def test_augment_keeps_the_pixels_a_crop_keeps() -> None:
    """Planted truth: with no padding a crop is the image itself, so only flips change it."""
    images = torch.rand(32, 1, 5, 5)
    out = augment(images, torch.Generator().manual_seed(0), padding=0)
    flipped = ~torch.isclose(out, images).flatten(1).all(1)
    assert torch.equal(out[flipped], images[flipped].flip(-1)) and 0 < flipped.sum() < 32


def _write_tiny(root: Path, wnids: list[str], per_class: int, val_per_class: int) -> None:
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    rng = np.random.default_rng(2)
    lines = []
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            mode = "L" if i == 0 else "RGB"  # the real set holds some greyscale JPEGs
            Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(folder / f"{wnid}_{i}.JPEG")
        for i in range(val_per_class):
            name = f"val_{c * val_per_class + i}.JPEG"
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "val" / "images" / name)
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tinyimagenet_reads_official_layout_and_resplits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "TINY_MOVED_PER_CLASS", 2)
    wnids = ["n01443537", "n01629819", "n01641577"]
    _write_tiny(tmp_path, wnids, per_class=6, val_per_class=3)
    train, test = load_dataset("tinyimagenet", True, tmp_path), load_dataset("tinyimagenet", False, tmp_path)
    assert (len(train), len(test)) == (3 * 4, 3 * (2 + 3))
    train_files = {p for p, _ in train.samples}
    assert not train_files & {p for p, _ in test.samples}
    annotated = dict(line.split("\t")[:2] for line in
                     (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").read_text().splitlines())
    validation = [(path, label) for path, label in test.samples if path.parent.parent.name == "val"]
    assert len(validation) == len(annotated) == 9
    for path, label in train.samples + test.samples:
        if path.parent.parent.name == "val":  # a validation image: the class val_annotations.txt gives it
            assert wnids[label] == annotated[path.name], path.name
        else:
            assert path.name.startswith(f"{wnids[label]}_"), path.name
    x, _ = train[0]
    assert x.shape == (3, 64, 64) and 0 <= x.min() and x.max() <= 1
    again = load_dataset("tinyimagenet", True, tmp_path)
    assert [p for p, _ in again.samples] == [p for p, _ in train.samples], "the re-split must be seeded"


def test_mnist5k_split_is_fixed_and_stratified() -> None:
    train, test = load_dataset("mnist5k", True), load_dataset("mnist5k", False)
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(test.tensors[1]).tolist() == [100] * 10
    assert torch.equal(load_dataset("mnist5k", False).tensors[0], test.tensors[0])
    x = train.tensors[0]
    assert x.shape[1:] == (1, 28, 28) and x.min() == 0 and x.max() == 1


@pytest.mark.parametrize("name", ["mnist", "cifar10", "tinyimagenet"])
def test_missing_files_name_the_folder_and_the_fix(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path)) as err:
        load_dataset(name, root=tmp_path)
    assert ("download=True" in str(err.value)) == (name != "tinyimagenet")


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(InvalidArgument, match="mnist5k"):
        dataset_info("imagenet21k")


def test_loader_subset_is_seeded_and_sized() -> None:
    ds = load_dataset("mnist5k", train=False)
    a = loader_to_tensors(make_loader(ds, 64, subset=100, seed=3))
    b = loader_to_tensors(make_loader(ds, 100, subset=100, seed=3))
    c = loader_to_tensors(make_loader(ds, 100, subset=100, seed=4))
    assert len(a[0]) == 100 and torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    with pytest.raises(InvalidArgument):
        make_loader(ds, subset=0)

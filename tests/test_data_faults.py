"""Data faults name the path and the fix (``gmmvit.data.faults``): data in the real on-disk formats,
made in tmp_path, each broken one way."""

from __future__ import annotations

import errno
import pickle

import numpy as np
import pytest
from PIL import Image

from gmmvit.data import datasets
from gmmvit.errors import DatasetUnavailable

WNIDS = ["n01443537", "n01629819", "n01641577"]


def tiny_imagenet(root, val_classes=WNIDS, annotations=True):
    """A Tiny-ImageNet tree as the zip unpacks it: train/<wnid>/images/*.JPEG, val/images/*.JPEG and
    val_annotations.txt naming each val image's class."""
    base = root / "tiny-imagenet-200"
    for wnid in WNIDS:
        (base / "train" / wnid / "images").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 64), (i, 0, 0)).save(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, wnid in enumerate(val_classes):
        Image.new("RGB", (64, 64)).save(base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    if annotations:
        (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def test_tinyimagenet_val_labels_are_the_training_sets_class_indices(tmp_path):
    tiny_imagenet(tmp_path, val_classes=[WNIDS[2], WNIDS[0], WNIDS[1]])
    train = datasets.tinyimagenet(str(tmp_path), train=True)
    val = datasets.tinyimagenet(str(tmp_path), train=False)
    assert val.class_to_idx == train.class_to_idx
    assert sorted((path.split("/")[-2], target) for path, target in val.samples) == \
        sorted(train.class_to_idx.items())


def test_a_class_missing_from_tinyimagenet_val_is_one_line_naming_it(tmp_path):
    base = tiny_imagenet(tmp_path, val_classes=[WNIDS[0], WNIDS[2]])
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=False)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {base / 'val'} has no images of class {WNIDS[1]}, one of the 3 of {base / 'train'}; "
        "restore val/ from tiny-imagenet-200.zip (unzip it again)")


def test_a_missing_val_annotations_file_is_named_with_the_fix(tmp_path):
    base = tiny_imagenet(tmp_path, annotations=False)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=False)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {base / 'val' / 'val_annotations.txt'} is missing, so the images in "
        f"{base / 'val' / 'images'} have no class; restore it from tiny-imagenet-200.zip (unzip it again into "
        f"{tmp_path})")
    assert len(list((base / "val" / "images").iterdir())) == 3  # nothing moved


def test_a_truncated_cifar_batch_is_reported_corrupt_not_absent(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch)[:100])
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.cifar10(str(tmp_path), train=True)
    assert str(refused.value) == (
        f"dataset cifar10: {folder / 'data_batch_1'} is corrupt (its checksum is not the dataset's); delete it and "
        f"run once with network access, or copy cifar-10-batches-py/ into {tmp_path}")


def test_a_data_folder_that_is_a_file_is_named(compose_config, tmp_path):
    not_a_folder = tmp_path / "data.tar"
    not_a_folder.write_text("")
    for dataset in ("cifar10", "fashion_mnist", "tinyimagenet"):
        with pytest.raises(DatasetUnavailable) as refused:
            source = compose_config([f"dataset={dataset}"], data_dir=not_a_folder).dataset.source
            getattr(datasets, dataset)(source.root, train=True)
        assert str(refused.value) == (f"dataset {dataset}: {not_a_folder} is a file, not a folder; point GMMVIT_DATA "
                                      "(or paths.data=DIR) at a writable folder")


def test_a_folder_that_cannot_be_written_is_named_not_called_offline(tmp_path):
    def load(download):
        if not download:
            raise RuntimeError("Dataset not found or corrupted.")
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cifar10"))

    with pytest.raises(DatasetUnavailable) as refused:
        datasets._download_or_explain(load, "cifar10", tmp_path / "cifar10", "unused")
    assert str(refused.value) == (
        f"dataset cifar10: {tmp_path / 'cifar10'} cannot be written (Permission denied), and the data must be "
        f"downloaded or unpacked there; make {tmp_path / 'cifar10'} writable or point GMMVIT_DATA (or "
        "paths.data=DIR) at a writable folder")


def test_a_data_fault_is_recorded_as_the_runs_failure_in_the_words_the_user_saw(compose_config, tmp_path):
    import json

    from gmmvit.run.train import train

    not_a_folder = tmp_path / "data.tar"
    not_a_folder.write_text("")
    cfg = compose_config(["dataset=cifar10", "logger=none", "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
                          "threads=1"], run_dir=tmp_path / "run", data_dir=not_a_folder)
    with pytest.raises(Exception):
        train(cfg)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (record["status"], record["reason"]) == (
        "failed", f"DatasetUnavailable: dataset cifar10: {not_a_folder} is a file, not a folder; point GMMVIT_DATA "
                  "(or paths.data=DIR) at a writable folder")

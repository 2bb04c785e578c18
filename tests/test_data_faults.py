"""Data faults name the path and the fix (``gmmvit.data.faults``): data in the real on-disk formats,
made in tmp_path, each broken one way."""

from __future__ import annotations

import errno
import gzip
import pickle
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from torchvision import datasets as torchvision_datasets
from torchvision.datasets.utils import calculate_md5 as check_md5

from conftest import REPO
from gmmvit.data import datasets, facts
from gmmvit.data.transforms import Transformed
from gmmvit.errors import DatasetUnavailable

WNIDS = ["n01443537", "n01629819", "n01641577"]


def tiny_imagenet(root, val_classes=WNIDS, annotations=True):
    """A small Tiny-ImageNet tree as the zip unpacks it: wnids.txt naming its classes,
    train/<wnid>/images/*.JPEG with <wnid>_boxes.txt listing them, val/images/*.JPEG and
    val_annotations.txt naming each val image's class."""
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for wnid in WNIDS:
        (base / "train" / wnid / "images").mkdir(parents=True)
        boxes = []
        for i in range(2):
            Image.new("RGB", (64, 64), (i, 0, 0)).save(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, wnid in enumerate(val_classes):
        Image.new("RGB", (64, 64)).save(base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    if annotations:
        (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def truncate(path, keep=300):
    path.write_bytes(path.read_bytes()[:keep])


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


def test_a_file_missing_from_the_cifar_folder_is_named_with_how_to_get_it_not_to_delete_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    cifar10_folder(folder)
    (folder / "data_batch_1").unlink()
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.cifar10(str(tmp_path), train=True)
    assert str(refused.value) == (f"dataset cifar10: {folder / 'data_batch_1'} is missing; run once with network "
                                  f"access, or copy cifar-10-batches-py/ into {tmp_path}")


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


def test_a_truncated_tinyimagenet_image_is_one_line_naming_it(tmp_path):
    base = tiny_imagenet(tmp_path)
    image = base / "train" / WNIDS[0] / "images" / f"{WNIDS[0]}_0.JPEG"
    truncate(image)
    train = datasets.tinyimagenet(str(tmp_path), train=True)
    with pytest.raises(DatasetUnavailable) as refused:
        train[0]
    assert str(refused.value) == (
        f"dataset tinyimagenet: {image} cannot be read as an image (Truncated File Read); replace it: unzip "
        f"tiny-imagenet-200.zip again into {tmp_path}")


def test_a_file_that_is_no_image_is_named_so(tmp_path):
    base = tiny_imagenet(tmp_path, val_classes=[WNIDS[2], WNIDS[0], WNIDS[1]])
    datasets.tinyimagenet(str(tmp_path), train=False)
    image = base / "val" / WNIDS[2] / "val_0.JPEG"
    image.write_text("<html>Not Found</html>")
    val = datasets.tinyimagenet(str(tmp_path), train=False)
    with pytest.raises(DatasetUnavailable, match=f"{image} cannot be read as an image \\(not an image PIL can read\\)"):
        val[val.samples.index((str(image), 2))]


def test_a_damaged_image_read_in_a_loader_worker_reaches_the_main_process_as_its_one_line(tmp_path):
    from torch.utils.data import DataLoader
    from torchvision.transforms import ToTensor

    base = tiny_imagenet(tmp_path)
    image = base / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_1.JPEG"
    truncate(image)
    loader = DataLoader(Transformed(datasets.tinyimagenet(str(tmp_path), train=True), ToTensor()), batch_size=2,
                        num_workers=1)
    with pytest.raises(DatasetUnavailable) as refused:
        list(loader)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {image} cannot be read as an image (Truncated File Read); replace it: unzip "
        f"tiny-imagenet-200.zip again into {tmp_path}")


def test_a_damaged_image_met_by_a_training_runs_loader_worker_ends_it_in_one_line_exit_2(tmp_path):
    import json

    tiny_imagenet(tmp_path / "data" / "tinyimagenet", val_classes=WNIDS)
    image = tmp_path / "data" / "tinyimagenet" / "tiny-imagenet-200" / "train" / WNIDS[2] / "images" / \
        f"{WNIDS[2]}_0.JPEG"
    truncate(image)
    out = subprocess.run([sys.executable, "src/train.py", "dataset=tinyimagenet", "dataset.num_classes=3",
                          "logger=none", "model.depth=1",
                          "model.embed_dim=32", "model.num_heads=2", "recipe.batch_size=2", "recipe.epochs=1",
                          "recipe.warmup_epochs=0", "threads=1", "workers=1", "data_on_gpu=false",
                          f"paths.data={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    line = (f"dataset tinyimagenet: {image} cannot be read as an image (Truncated File Read); replace it: unzip "
            f"tiny-imagenet-200.zip again into {tmp_path / 'data' / 'tinyimagenet'}")
    assert (out.returncode, out.stderr.strip().splitlines()[-1]) == (2, f"gmmvit: error: {line}"), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (record["status"], record["reason"]) == ("failed", f"DatasetUnavailable: {line}")


def test_an_empty_class_folder_in_tinyimagenet_train_is_named_with_its_count(tmp_path):
    base = tiny_imagenet(tmp_path)
    for image in (base / "train" / WNIDS[1] / "images").iterdir():
        image.unlink()
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=True)
    assert str(refused.value) == (f"dataset tinyimagenet: {base / 'train' / WNIDS[1]} holds 0 of its 2 images; unzip "
                                  f"tiny-imagenet-200.zip again into {tmp_path}")


def test_a_class_short_of_the_images_its_boxes_file_lists_is_named(tmp_path):
    base = tiny_imagenet(tmp_path)
    (base / "train" / WNIDS[2] / "images" / f"{WNIDS[2]}_1.JPEG").unlink()
    with pytest.raises(DatasetUnavailable, match=f"{base / 'train' / WNIDS[2]} holds 1 of its 2 images; "):
        datasets.tinyimagenet(str(tmp_path), train=True)


def test_a_class_of_wnids_txt_missing_from_train_is_named_with_the_count(tmp_path):
    base = tiny_imagenet(tmp_path)
    shutil.rmtree(base / "train" / WNIDS[0])
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=True)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {base / 'train'} holds 2 of the 3 classes of {base / 'wnids.txt'} ({WNIDS[0]} "
        f"missing); unzip tiny-imagenet-200.zip again into {tmp_path}")


def test_a_folder_in_train_that_wnids_txt_does_not_list_is_named(tmp_path):
    base = tiny_imagenet(tmp_path)
    (base / "train" / "n09999999").mkdir()
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=True)
    assert str(refused.value) == (f"dataset tinyimagenet: {base / 'train' / 'n09999999'} is not a class of "
                                  f"{base / 'wnids.txt'}; move it out of {base / 'train'}")


def test_without_its_lists_train_is_held_to_the_formats_counts(tmp_path):
    base = tiny_imagenet(tmp_path)
    (base / "wnids.txt").unlink()
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=True)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {base / 'train'} holds 3 classes, not Tiny-ImageNet's {facts.TINYIMAGENET_CLASSES} "
        f"({base / 'wnids.txt'} is missing too); unzip tiny-imagenet-200.zip again into {tmp_path}")


def test_a_val_short_of_the_images_val_annotations_lists_is_named(tmp_path):
    base = tiny_imagenet(tmp_path, val_classes=[*WNIDS, WNIDS[0]])
    (base / "val" / "images" / "val_3.JPEG").unlink()
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=False)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {base / 'val'} holds 3 of the 4 images of {base / 'val' / 'val_annotations.txt'}; "
        f"unzip tiny-imagenet-200.zip again into {tmp_path}")


def test_tinyimagenet_unzipped_one_folder_too_deep_is_named_where_it_was_found(tmp_path):
    tiny_imagenet(tmp_path / "tiny-imagenet-200")
    expected, found = tmp_path / "tiny-imagenet-200", tmp_path / "tiny-imagenet-200" / "tiny-imagenet-200"
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path), train=True)
    assert str(refused.value) == (f"dataset tinyimagenet is not in {expected} but in {found}; move what {found} "
                                  f"holds into {expected}")


def test_an_imagefolder_that_is_not_tinyimagenet_is_not_taken_for_it(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n01440764").mkdir(parents=True)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(tmp_path / "tinyimagenet"), train=True)
    expected = tmp_path / "tinyimagenet" / "tiny-imagenet-200"
    assert str(refused.value).startswith(f"dataset tinyimagenet is not in {expected}; download ")


def test_tinyimagenet_unzipped_one_folder_too_shallow_is_named_where_it_was_found(tmp_path):
    tiny_imagenet(tmp_path)
    root = tmp_path / "tiny-imagenet-200"  # the data root pointed at the tree itself
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(root), train=True)
    assert str(refused.value) == (
        f"dataset tinyimagenet is not in {root / 'tiny-imagenet-200'} but in {root} ({root / 'wnids.txt'}, "
        f"{root / 'train'}); move the dataset's files there into {root / 'tiny-imagenet-200'}")


def test_svhn_saved_into_the_data_folder_above_its_own_is_named_where_it_was_found(tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.arange(1, 5)[:, None]})
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.svhn(str(tmp_path / "svhn"), train=True)
    assert str(refused.value) == (
        f"dataset svhn is not in {tmp_path / 'svhn'} but in {tmp_path} ({tmp_path / 'train_32x32.mat'}); move the "
        f"dataset's files there into {tmp_path / 'svhn'}")


def test_a_half_extracted_train_is_not_taken_for_a_dataset_of_fewer_classes(tmp_path):
    base = tiny_imagenet(tmp_path)
    shutil.rmtree(base / "train" / WNIDS[1])
    assert facts.facts("gmmvit.data.datasets.tinyimagenet", str(tmp_path)) == facts.Facts(3, 3, str(base / "wnids.txt"))


def cifar10_folder(folder):
    """A small CIFAR-10 folder in its real format: pickled batches and batches.meta."""
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch"):
        batch = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))


def test_cifar_extracted_beside_its_data_folder_is_named_where_it_was_found(tmp_path):
    cifar10_folder(tmp_path / "cifar-10-batches-py")
    root = tmp_path / "cifar10"
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.cifar10(str(root), train=True)
    assert str(refused.value) == (
        f"dataset cifar10 is not in {root / 'cifar-10-batches-py'} but in {tmp_path / 'cifar-10-batches-py'}; move "
        f"what {tmp_path / 'cifar-10-batches-py'} holds into {root / 'cifar-10-batches-py'}")


def test_a_truncated_cifar_archive_is_named_corrupt_not_called_offline(tmp_path):
    cifar10_folder(tmp_path / "unpacked" / "cifar-10-batches-py")
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "unpacked" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    truncate(archive)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.cifar10(str(tmp_path / "cifar10"), train=True)
    assert str(refused.value) == (
        f"dataset cifar10: {archive} is corrupt (its checksum is not the dataset's); delete it and run once with "
        f"network access, or copy cifar-10-batches-py/ into {tmp_path / 'cifar10'}")


def cifar_archive(cls, tmp_path):
    """(``cls`` with the checksums of the files and archive made here, as torchvision's class holds
    those of the real ones; the data folder): ``cls``'s whole folder in its real format (every batch,
    10 images each, and the meta file) made in ``tmp_path/made``, archived into the data folder and
    extracted there."""
    made, root = tmp_path / "made" / cls.base_folder, tmp_path / "data" / cls.__name__.lower()
    made.mkdir(parents=True)
    root.mkdir(parents=True)
    labels = "labels" if cls is torchvision_datasets.CIFAR10 else "fine_labels"
    for name, _ in cls.train_list + cls.test_list:
        (made / name).write_bytes(pickle.dumps({"data": np.zeros((10, 3072), np.uint8), labels: list(range(10))}))
    (made / cls.meta["filename"]).write_bytes(pickle.dumps({cls.meta["key"]: [str(i) for i in range(100)]}))
    with tarfile.open(root / cls.filename, "w:gz") as tar:
        tar.add(made, arcname=cls.base_folder)
    shutil.copytree(made, root / cls.base_folder)

    class Generated(cls):
        train_list = [[name, check_md5(made / name)] for name, _ in cls.train_list]
        test_list = [[name, check_md5(made / name)] for name, _ in cls.test_list]
        meta = {**cls.meta, "md5": check_md5(made / cls.meta["filename"])}
        tgz_md5 = check_md5(root / cls.filename)

    return Generated, root


CIFARS = [(torchvision_datasets.CIFAR10, "cifar10"), (torchvision_datasets.CIFAR100, "cifar100")]


@pytest.mark.parametrize("cls, name", CIFARS)
def test_a_file_missing_from_the_cifar_folder_is_extracted_again_from_its_intact_archive(tmp_path, capsys, cls, name):
    generated, root = cifar_archive(cls, tmp_path)
    lost = root / cls.base_folder / cls.train_list[-1][0]
    lost.unlink()
    assert len(datasets._cifar(generated, name, str(root), train=True)) == 10 * len(cls.train_list)
    assert capsys.readouterr().out == (f"[gmmvit] dataset {name}: {lost} is missing; extracting "
                                       f"{root / cls.filename} again (its checksum is the dataset's)\n")
    assert lost.read_bytes() == (tmp_path / "made" / cls.base_folder / lost.name).read_bytes()


@pytest.mark.parametrize("cls, name", CIFARS)
def test_a_damaged_file_of_the_cifar_folder_is_extracted_again_from_its_intact_archive(tmp_path, capsys, cls, name):
    generated, root = cifar_archive(cls, tmp_path)
    damaged = root / cls.base_folder / cls.test_list[0][0]
    truncate(damaged, keep=100)
    assert len(datasets._cifar(generated, name, str(root), train=False)) == 10
    assert f"{damaged} is corrupt (its checksum is not the dataset's); extracting " in capsys.readouterr().out
    assert damaged.read_bytes() == (tmp_path / "made" / cls.base_folder / damaged.name).read_bytes()


def test_an_archive_without_cifars_real_checksum_is_not_extracted_over_its_folder(tmp_path):
    _, root = cifar_archive(torchvision_datasets.CIFAR10, tmp_path)
    lost = root / "cifar-10-batches-py" / "data_batch_5"
    lost.unlink()
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.cifar10(str(root), train=True)
    assert str(refused.value).startswith(f"dataset cifar10: {root / 'cifar-10-batches-py' / 'data_batch_1'} is "
                                         "corrupt (its checksum is not the dataset's); delete it and")
    assert not lost.exists()


def zip_of(tree, archive):
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(tree.rglob("*")):
            zipped.write(path, path.relative_to(tree.parent))


def test_a_tinyimagenet_zip_not_yet_unzipped_is_unzipped_and_read(tmp_path, capsys):
    root = tmp_path / "data" / "tinyimagenet"
    root.mkdir(parents=True)
    zip_of(tiny_imagenet(tmp_path / "made"), root / "tiny-imagenet-200.zip")
    train = datasets.tinyimagenet(str(root), train=True)
    assert (len(train.classes), len(train)) == (3, 6)
    assert capsys.readouterr().out == f"[gmmvit] unzipping {root / 'tiny-imagenet-200.zip'} into {root} (once)\n"
    assert sorted(p.name for p in root.iterdir()) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]


def test_a_truncated_tinyimagenet_zip_is_named_corrupt_and_nothing_is_left_half_unzipped(tmp_path):
    root = tmp_path / "data" / "tinyimagenet"
    root.mkdir(parents=True)
    archive = root / "tiny-imagenet-200.zip"
    zip_of(tiny_imagenet(tmp_path / "made"), archive)
    truncate(archive, keep=archive.stat().st_size // 2)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.tinyimagenet(str(root), train=True)
    assert str(refused.value) == (
        f"dataset tinyimagenet: {archive} is corrupt (File is not a zip file); delete it and download "
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip again")
    assert sorted(p.name for p in root.iterdir()) == ["tiny-imagenet-200.zip"]


def idx_file(path, array):
    """``array`` (uint8) as an idx file: magic 0x0000 0803 (or 0801), big-endian dimensions, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())


def fashion_mnist_raw(raw, n=6):
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        idx_file(raw / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        idx_file(raw / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))


def test_small_fashion_mnist_idx_files_are_read(tmp_path):
    fashion_mnist_raw(tmp_path / "FashionMNIST" / "raw")
    assert len(datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "no-debian"))) == 6


def test_a_truncated_fashion_mnist_idx_file_is_named_with_its_size(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    fashion_mnist_raw(raw)
    truncate(raw / "train-images-idx3-ubyte", keep=1000)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "no-debian"))
    assert str(refused.value) == (
        f"dataset fashion_mnist: {raw / 'train-images-idx3-ubyte'} is truncated (1,000 bytes; its header says 4,720); "
        "delete it and install Debian's package: apt-get install dataset-fashion-mnist (make install does)")


def gzipped(folder, raw):
    """Each idx file of ``raw`` as ``folder/<name>.gz``, as Debian's package and the download hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    for idx in sorted(raw.glob("*-ubyte")):
        with open(idx, "rb") as src, gzip.open(folder / f"{idx.name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)


def test_a_truncated_fashion_mnist_idx_file_beside_debians_package_is_fixed_by_deleting_it(tmp_path):
    fashion_mnist_raw(tmp_path / "made")
    gzipped(tmp_path / "debian", tmp_path / "made")
    raw = tmp_path / "FashionMNIST" / "raw"
    datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "debian"))
    truncate(raw / "train-images-idx3-ubyte", keep=1000)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "debian"))
    assert str(refused.value) == (
        f"dataset fashion_mnist: {raw / 'train-images-idx3-ubyte'} is truncated (1,000 bytes; its header says 4,720); "
        f"delete it: the next run unpacks it again from {tmp_path / 'debian' / 'train-images-idx3-ubyte.gz'}")
    (raw / "train-images-idx3-ubyte").unlink()
    assert len(datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "debian"))) == 6


def test_a_truncated_fashion_mnist_idx_file_beside_its_intact_download_is_fixed_by_deleting_it(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    fashion_mnist_raw(raw)
    gzipped(raw, raw)

    class FashionMNIST(torchvision_datasets.FashionMNIST):  # its name is its folder's
        """torchvision's class, its downloads' checksums those of the archives made here."""
        resources = [(gz, check_md5(raw / gz)) for gz, _ in torchvision_datasets.FashionMNIST.resources]

    truncate(raw / "train-images-idx3-ubyte", keep=1000)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "no-debian"), cls=FashionMNIST)
    assert str(refused.value) == (
        f"dataset fashion_mnist: {raw / 'train-images-idx3-ubyte'} is truncated (1,000 bytes; its header says 4,720); "
        f"delete it: the next run unpacks it again from {raw / 'train-images-idx3-ubyte.gz'}")
    (raw / "train-images-idx3-ubyte").unlink()
    assert len(datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "no-debian"),
                                      cls=FashionMNIST)) == 6


@pytest.mark.parametrize("damage, why", [(lambda gz: truncate(gz, keep=40), "Compressed file ended before"),
                                         (lambda gz: gz.write_bytes(b"not gzip"), "Not a gzipped file")])
def test_a_damaged_file_of_debians_package_is_one_line_and_leaves_nothing_half_unpacked(tmp_path, damage, why):
    fashion_mnist_raw(tmp_path / "made")
    gzipped(tmp_path / "debian", tmp_path / "made")
    gz = tmp_path / "debian" / "train-images-idx3-ubyte.gz"
    damage(gz)
    with pytest.raises(DatasetUnavailable) as refused:
        datasets.fashion_mnist(str(tmp_path / "data"), train=True, debian_dir=str(tmp_path / "debian"))
    assert str(refused.value).startswith(f"dataset fashion_mnist: {gz} is corrupt ({why}")
    assert str(refused.value).endswith("); reinstall Debian's package: apt-get install --reinstall "
                                       "dataset-fashion-mnist")
    assert not list((tmp_path / "data" / "FashionMNIST" / "raw").glob("train-images-idx3-ubyte*"))


def test_a_truncated_fashion_mnist_download_is_named_corrupt(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as gz:
        gz.write(bytes(4000))
    truncate(raw / "train-images-idx3-ubyte.gz", keep=20)
    with pytest.raises(DatasetUnavailable, match=f"{raw / 'train-images-idx3-ubyte.gz'} is corrupt "):
        datasets.fashion_mnist(str(tmp_path), train=True, debian_dir=str(tmp_path / "no-debian"))

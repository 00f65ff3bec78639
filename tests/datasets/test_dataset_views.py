"""DLDataset as a lazy Sequence: no image is read before a sample is, a deleted image fails
only its own sample, views share the index, returned samples are fresh copies."""
from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np
import PIL.Image
import pytest

from dlbatch import DLError, DLSampleError
from dlbatch.datasets import DLDataset, read_dl_dataset, split_dl_dataset

from .helpers import coco_file, pixels, save

CATEGORIES = [{"id": 1, "name": "thing"}]


def five_images(root):
    anns = [{"id": k + 1, "image_id": k, "category_id": 1, "bbox": [k, 1, 3, 2]} for k in range(5)]
    return coco_file(root, [(k, f"{k}.png", 10, 12) for k in range(5)], anns, CATEGORIES)


@pytest.fixture
def opened(monkeypatch):
    """Names of the files Pillow opens."""
    names, real = [], PIL.Image.open

    def spy(fp, *args, **kwargs):
        names.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", spy)
    return names


@pytest.mark.parametrize("kind", ["coco", "classification"])
def test_reading_the_index_opens_no_image(tmp_path, opened, kind):
    if kind == "coco":
        path = five_images(tmp_path)
    else:
        for k in range(3):
            save(tmp_path / f"c{k}" / "x.png", pixels(4, 4, seed=k))
        path = tmp_path
    ds = read_dl_dataset(path)
    assert opened == []
    ds[2]
    assert len(opened) == 1 and opened[0] == str(ds.image_path(2))


def test_deleted_image_fails_only_when_its_sample_is_read(tmp_path):
    ds = read_dl_dataset(five_images(tmp_path))
    (tmp_path / "3.png").unlink()
    assert ds[2]["image_id"] == 2 and ds[4]["image_id"] == 4
    with pytest.raises(DLSampleError, match=r"3\.png: image file not found"):
        ds[3]


def test_sequence_protocol_and_views(tmp_path):
    ds = read_dl_dataset(five_images(tmp_path))
    assert isinstance(ds, Sequence) and isinstance(ds, DLDataset) and len(ds) == 5
    assert [s["image_id"] for s in ds] == [0, 1, 2, 3, 4]
    assert ds[-1]["image_id"] == 4
    assert [s["image_id"] for s in ds[1:4]] == [1, 2, 3]
    view = ds.subset([4, 0, 4])
    assert isinstance(view, DLDataset) and [s["image_id"] for s in view] == [4, 0, 4]
    assert (view.class_ids, view.instance_type) == (ds.class_ids, ds.instance_type)
    with pytest.raises(IndexError):
        ds[5]
    with pytest.raises(TypeError):
        ds["0"]


def test_annotations_give_labels_without_reading_and_samples_are_copies(tmp_path, opened):
    ds = read_dl_dataset(five_images(tmp_path))
    ann = ds.annotations(3)
    assert opened == [] and ann["bbox_col1"].tolist() == [2.5] and ann["split"] is None
    assert ann["image_size"] == [10, 12]
    sample = ds[3]
    sample["bbox_col1"][0] = 99.0
    ann["bbox_col1"][0] = 77.0
    assert ds[3]["bbox_col1"].tolist() == [2.5]


def test_split_views_need_splits(tmp_path):
    ds = read_dl_dataset(five_images(tmp_path))
    with pytest.raises(DLError, match="split_dl_dataset"):
        ds.split("train")
    split = split_dl_dataset(ds, 80, 20)
    assert len(split.split("test")) == 0 and len(split.split("train")) == 4
    with pytest.raises(DLError, match="unknown split 'val'"):
        split.split("val")


def test_a_dataset_pickles_for_worker_processes(tmp_path):
    ds = split_dl_dataset(read_dl_dataset(five_images(tmp_path)), 60, 20, seed=1)
    copy = pickle.loads(pickle.dumps(ds))
    assert [copy.annotations(i)["split"] for i in range(5)] == [ds.annotations(i)["split"] for i in range(5)]
    np.testing.assert_array_equal(copy[1]["image"], ds[1]["image"])

"""HALCON DLDataset dictionaries saved as JSON: every model type, splits kept, HALCON's
scalar-for-one-box form, and errors naming the file and the sample."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch import DLError, DLSampleError
from dlbatch.datasets import read_dl_dataset

from .helpers import dump, pixels, save


def halcon(root, samples, image_dir="imgs", **extra):
    for k, s in enumerate(samples):
        save(root / image_dir / s["image_file_name"], pixels(16, 20, seed=k))
    return dump(root / "dataset.json", {"class_ids": [2, 5], "class_names": ["good", "bad"],
                                        "image_dir": image_dir, "samples": samples, **extra})


def test_classification_with_splits(tmp_path):
    samples = [{"image_file_name": f"{k}.png", "image_id": 10 + k, "split": split, "image_label_id": cid}
               for k, (split, cid) in enumerate([("train", 2), ("validation", 5), ("train", 5), ("test", 2)])]
    ds = read_dl_dataset(halcon(tmp_path, samples))
    assert (ds.model_type, ds.class_ids, ds.class_names) == ("classification", [2, 5], ["good", "bad"])
    assert [ds[i]["image_label_id"] for i in range(4)] == [2, 5, 5, 2]
    assert ds.split_names() == ["train", "validation", "test"]
    train = ds.split("train")
    assert [s["image_id"] for s in train] == [10, 12]
    np.testing.assert_array_equal(train[1]["image"], pixels(16, 20, seed=2))


def test_rectangle1_boxes_scalars_and_lists_and_empty_images(tmp_path):
    samples = [{"image_file_name": "a.png", "image_id": 0, "bbox_row1": 1.5, "bbox_col1": 2.5, "bbox_row2": 9.5,
                "bbox_col2": 12.5, "bbox_label_id": 5},
               {"image_file_name": "b.png", "image_id": 1, "bbox_row1": [0, 3], "bbox_col1": [0, 4],
                "bbox_row2": [4, 8], "bbox_col2": [5, 9], "bbox_label_id": [2, 5]},
               {"image_file_name": "c.png", "image_id": 2, "bbox_row1": [], "bbox_col1": [], "bbox_row2": [],
                "bbox_col2": [], "bbox_label_id": []}]
    ds = read_dl_dataset(halcon(tmp_path, samples))
    assert (ds.model_type, ds.instance_type) == ("detection", "rectangle1")
    assert ds[0]["bbox_row1"].tolist() == [1.5] and ds[0]["bbox_label_id"].tolist() == [5]
    assert ds[1]["bbox_col2"].tolist() == [5.0, 9.0] and ds[1]["bbox_label_id"].dtype == np.int64
    assert ds[2]["bbox_row2"].shape == (0,) and ds[2]["bbox_row2"].dtype == np.float64


def test_rectangle2_boxes(tmp_path):
    box = {"bbox_row": [8.0], "bbox_col": [9.0], "bbox_phi": [0.7], "bbox_length1": [5.0], "bbox_length2": [2.0]}
    ds = read_dl_dataset(halcon(tmp_path, [{"image_file_name": "a.png", "bbox_label_id": [2], **box}]))
    assert ds.instance_type == "rectangle2"
    sample = ds[0]
    assert {k: sample[k].tolist() for k in box} == box and sample["image_id"] == 0


def test_segmentation_with_segmentation_dir(tmp_path):
    lab = np.random.default_rng(1).choice([2, 5], (16, 20)).astype(np.uint8)
    save(tmp_path / "masks" / "a_label.png", lab)
    path = halcon(tmp_path, [{"image_file_name": "a.png", "image_id": 3, "segmentation_file_name": "a_label.png",
                              "split": "train"}], segmentation_dir="masks")
    ds = read_dl_dataset(path, format="halcon")
    assert ds.model_type == "segmentation"
    np.testing.assert_array_equal(ds[0]["segmentation_image"], lab)


def test_unknown_class_id_names_the_file_and_sample(tmp_path):
    path = halcon(tmp_path, [{"image_file_name": "a.png", "image_label_id": 2},
                             {"image_file_name": "b.png", "image_label_id": 4}])
    with pytest.raises(DLSampleError) as info:
        read_dl_dataset(path)
    assert all(f in str(info.value) for f in (str(path), "samples[1]", "'b.png'", "4"))


def test_unknown_box_class_and_box_outside_at_read_time(tmp_path):
    box = {"bbox_row1": [1], "bbox_col1": [1], "bbox_row2": [5], "bbox_col2": [25]}  # image is 16 x 20
    path = halcon(tmp_path, [{"image_file_name": "a.png", "bbox_label_id": [2], **box}])
    ds = read_dl_dataset(path)
    with pytest.raises(DLSampleError, match=r"imgs/a\.png.*outside the 16 x 20 image"):
        ds[0]
    path = halcon(tmp_path, [{"image_file_name": "a.png", "bbox_label_id": [9], **box}])
    with pytest.raises(DLSampleError, match=r"dataset\.json: samples\[0\] \('a\.png'\).*\[9\]"):
        read_dl_dataset(path)


def test_missing_image_and_mixed_label_kinds(tmp_path):
    path = halcon(tmp_path, [{"image_file_name": "a.png", "image_label_id": 2}])
    (tmp_path / "imgs" / "a.png").unlink()
    with pytest.raises(DLSampleError, match=r"imgs/a\.png: image file not found"):
        read_dl_dataset(path)
    path = halcon(tmp_path, [{"image_file_name": "a.png", "image_label_id": 2},
                             {"image_file_name": "b.png", "segmentation_file_name": "b.png"}])
    with pytest.raises(DLError, match="exactly one kind of label"):
        read_dl_dataset(path)

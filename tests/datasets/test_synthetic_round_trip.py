"""write_synthetic_dataset -> read_dl_dataset gives the generator's samples exactly, for every
model type and both the type's own format and HALCON JSON; the COCO file is what COCO tools
expect (checked with pycocotools against the drawn pixels); and the samples read feed
preprocess_dl_samples and a training step of a model of their type."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlbatch
from dlbatch import DLError
from dlbatch.data import classification_samples, detection_samples, segmentation_samples
from dlbatch.data.families import BARS, BLOBS
from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset

N, SCENE = 6, dict(height=32, width=40, seed=3)
CASES = [("classification", "rectangle1"), ("detection", "rectangle1"), ("detection", "rectangle2"),
         ("segmentation", "rectangle1")]


def written(tmp_path, model_type, instance_type, fmt=None):
    options = {"min_objects": 1} if model_type == "detection" else {}
    path = write_synthetic_dataset(model_type, tmp_path / "ds", num_samples=N, instance_type=instance_type,
                                   format=fmt, **SCENE, **options)
    return read_dl_dataset(path)


def by_index(ds):
    """Dataset samples keyed by the generator index in their file name (000004.png -> 4)."""
    return {int(Path(s["image_file_name"]).stem): s for s in ds}


def assert_same(sample, reference, keys):
    for key in keys:
        got, want = np.asarray(sample[key]), np.asarray(reference[key])
        np.testing.assert_array_equal(got, want, err_msg=key)
        assert got.dtype == want.dtype, key


@pytest.mark.parametrize("fmt", [None, "halcon"])
@pytest.mark.parametrize("model_type, instance_type", CASES)
def test_reading_back_gives_the_generator_samples(tmp_path, model_type, instance_type, fmt):
    ds = written(tmp_path, model_type, instance_type, fmt)
    assert len(ds) == N and ds.model_type == model_type
    samples = by_index(ds)
    assert sorted(samples) == list(range(N))
    if model_type == "classification":
        reference = classification_samples(N, class_ids=range(3), **SCENE)  # label = family position
        assert ds.class_ids == [0, 1, 2] and ds.class_names == sorted(BLOBS[:3])
        for i, want in enumerate(reference):
            assert_same(samples[i], want, ["image"])
            assert ds.class_names[samples[i]["image_label_id"]] == BLOBS[want["image_label_id"]]
    elif model_type == "detection":
        assert ds.instance_type == instance_type and ds.class_ids == [1, 2, 3]
        assert ds.class_names == list((BLOBS if instance_type == "rectangle1" else BARS)[:3])
        reference = detection_samples(N, class_ids=(1, 2, 3), instance_type=instance_type, min_objects=1, **SCENE)
        for i, want in enumerate(reference):
            assert_same(samples[i], want, [k for k in want if k != "image"] + ["image"])
    else:
        assert ds.class_ids == [0, 1, 2, 3] and ds.class_names == ["background", *BLOBS[:3]]
        reference = segmentation_samples(N, class_ids=(1, 2, 3), background_id=0, **SCENE)
        for i, want in enumerate(reference):
            assert_same(samples[i], want, ["image", "segmentation_image"])


def pixel_box(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows, cols


@pytest.mark.parametrize("instance_type", ["rectangle1", "rectangle2"])
def test_coco_file_boxes_cover_the_drawn_pixels_in_coco_coordinates(tmp_path, instance_type):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    path = write_synthetic_dataset("detection", tmp_path / "ds", num_samples=N, instance_type=instance_type,
                                   min_objects=1, **SCENE)
    coco = COCO(str(path))
    reference = detection_samples(N, class_ids=(1, 2, 3), instance_type=instance_type, min_objects=1,
                                  return_masks=True, **SCENE)
    for i, sample in enumerate(reference):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
        assert [a["category_id"] for a in anns] == sample["bbox_label_id"].tolist()
        for ann, mask in zip(anns, sample["object_masks"]):
            rows, cols = pixel_box(mask)
            x, y, w, h = ann["bbox"]
            if instance_type == "rectangle1":  # COCO's tight box of pixels c0..c1 is x = c0, w = c1 - c0 + 1
                assert [x, y, w, h] == [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
            else:  # every drawn pixel centre (c + 0.5, r + 0.5 in COCO) inside the enclosing box
                assert x <= cols[0] + 0.5 and cols[-1] + 0.5 <= x + w
                assert y <= rows[0] + 0.5 and rows[-1] + 0.5 <= y + h
                assert set(ann["rbox"]) == {"row", "col", "phi", "length1", "length2"}


def make_model(model_type, instance_type):
    common = dict(image_dimensions=[32, 32, 3], batch_size=2, learning_rate=0.01, momentum=0.9, seed=0)
    if model_type == "classification":
        return dlbatch.create_dl_model("classification", backbone="compact", class_ids=[0, 1, 2], **common)
    if model_type == "segmentation":
        return dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1, 2, 3], **common)
    extra = dict(anchor_aspect_ratios=[2.0], anchor_angles=[0.0, 1.5707963], ignore_direction=True) \
        if instance_type == "rectangle2" else dict(anchor_aspect_ratios=[1.0])
    return dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2, 3], capacity="low",
                                   min_level=2, max_level=3, anchor_num_subscales=1,
                                   instance_type=instance_type, **extra, **common)


@pytest.mark.parametrize("model_type, instance_type", CASES)
def test_samples_read_preprocess_and_train_a_model_of_their_type(tmp_path, model_type, instance_type):
    ds = written(tmp_path, model_type, instance_type)
    model = make_model(model_type, instance_type)
    raw = [ds[0], ds[1]]
    prepared = dlbatch.preprocess_dl_samples(raw, model)
    assert prepared[0]["image"].shape == (32, 32, 3) and prepared[0]["image"].dtype == np.float32
    if model_type == "detection" and instance_type == "rectangle1":  # the image extent maps onto the new one
        np.testing.assert_allclose(prepared[0]["bbox_col1"], (raw[0]["bbox_col1"] + 0.5) * 32 / 40 - 0.5)
        np.testing.assert_array_equal(prepared[0]["bbox_row2"], raw[0]["bbox_row2"])
    if model_type == "segmentation":
        assert prepared[0]["segmentation_image"].shape == (32, 32)
        assert set(np.unique(prepared[0]["segmentation_image"])) <= set(np.unique(raw[0]["segmentation_image"]))
    losses = dlbatch.train_dl_model_batch(model, prepared)
    assert losses and all(np.isfinite(v) for v in losses.values())
    summary = dlbatch.evaluate_dl_model(model, prepared)
    main = model.model_type.main_metric.name
    assert main in summary and np.isfinite(summary[main])


def test_out_dir_must_be_new_or_empty_and_arguments_are_checked(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(DLError, match="not an empty folder"):
        write_synthetic_dataset("classification", tmp_path)
    with pytest.raises(DLError, match="model_type"):
        write_synthetic_dataset("regression", tmp_path / "a")
    with pytest.raises(DLError, match="channels"):
        write_synthetic_dataset("classification", tmp_path / "b", channels=4)


def test_grey_datasets_stay_grey(tmp_path):
    ds = read_dl_dataset(write_synthetic_dataset("segmentation", tmp_path / "g", num_samples=2, channels=1))
    reference = segmentation_samples(2, channels=1, class_ids=(1, 2, 3), seed=0)
    np.testing.assert_array_equal(ds[1]["image"], reference[1]["image"])


@pytest.mark.parametrize("num_classes", [5, 7])
def test_class_folder_names_sort_into_the_ids_the_generator_drew(tmp_path, num_classes):
    path = write_synthetic_dataset("classification", tmp_path / "c", num_samples=12, num_classes=num_classes,
                                   **SCENE)
    ds = read_dl_dataset(path)
    families = [BLOBS[k % 5] + (f"_{k // 5 + 1}" if k >= 5 else "") for k in range(num_classes)]
    assert ds.class_names == sorted(families) and ds.class_ids == list(range(num_classes))
    reference = classification_samples(12, class_ids=range(num_classes), **SCENE)
    samples = by_index(ds)
    for i, want in enumerate(reference):
        assert_same(samples[i], want, ["image"])
        assert ds.class_names[samples[i]["image_label_id"]] == families[want["image_label_id"]]

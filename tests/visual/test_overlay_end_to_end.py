"""Overlays of real results: a tiny model of each type applied to a synthetic raw image of
another size than the model's (through preprocess_dl_samples), drawn on the raw image, saved
as PNG with Pillow and read back."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import dlbatch
from dlbatch.core.preprocess import resize_nearest
from dlbatch.data import detection_samples, segmentation_samples

RAW_H, RAW_W = 45, 61
SIDE = 32


def round_trip(model, raw_image, result, path):
    """The overlay of `result` on `raw_image`, saved and read back (checked equal)."""
    overlay = model.model_type.draw_overlay(raw_image, result, model.hyperparameters)
    assert overlay.shape == (RAW_H, RAW_W, 3) and overlay.dtype == np.uint8
    Image.fromarray(overlay).save(path)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (RAW_W, RAW_H)
        assert np.array_equal(np.asarray(img), overlay)
    return overlay


def apply_raw(model, raw):
    prepared = dlbatch.preprocess_dl_samples([raw], model)
    assert prepared[0]["image"].shape[:2] == (SIDE, SIDE)
    return dlbatch.apply_dl_model(model, prepared)[0]


@pytest.mark.parametrize("channels", [3, 1])
def test_classification_end_to_end(tmp_path, channels):
    model = dlbatch.create_dl_model("classification", backbone="compact", class_ids=[1, 2, 3],
                                    class_names=["disc", "box", "triangle"],
                                    image_dimensions=[SIDE, SIDE, channels], seed=1)
    raw = segmentation_samples(1, height=RAW_H, width=RAW_W, channels=channels, seed=3)[0]
    raw = {"image": raw["image"][:, :, 0] if channels == 1 else raw["image"]}  # grey: H x W
    result = apply_raw(model, raw)
    overlay = round_trip(model, raw["image"], result, tmp_path / "cls.png")
    grey = np.repeat(np.asarray(raw["image"]).reshape(RAW_H, RAW_W, -1)[:, :, :1], 3, axis=2)
    changed = (overlay != (raw["image"] if channels == 3 else grey)).any(axis=-1)
    assert changed[:5, :5].all() and not changed[RAW_H // 2:].any()


@pytest.mark.parametrize("instance_type", ["rectangle1", "rectangle2"])
def test_detection_end_to_end(tmp_path, instance_type):
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2, 3],
                                    image_dimensions=[SIDE, SIDE, 3], instance_type=instance_type,
                                    min_confidence=0.0, max_num_detections=3, seed=2)
    raw = detection_samples(1, height=RAW_H, width=RAW_W, instance_type=instance_type, seed=4, min_objects=1)[0]
    result = apply_raw(model, raw)
    assert len(result["bbox_confidence"]) >= 1  # min_confidence 0: the untrained model returns boxes
    overlay = round_trip(model, raw["image"], result, tmp_path / f"{instance_type}.png")
    assert (overlay != raw["image"]).any()


def test_segmentation_end_to_end(tmp_path):
    model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=[0, 1, 2, 3],
                                    image_dimensions=[SIDE, SIDE, 3], seed=3)
    raw = segmentation_samples(1, height=RAW_H, width=RAW_W, seed=5)[0]
    result = apply_raw(model, raw)
    overlay = round_trip(model, raw["image"], result, tmp_path / "seg.png")
    # the class map at the raw image's size, whichever size apply_dl_model gives it in
    classes = resize_nearest(np.asarray(result["segmentation_image"]), RAW_H, RAW_W)
    changed = (overlay != raw["image"]).any(axis=-1)
    assert len(np.unique(classes)) >= 2  # this untrained model predicts background and other classes
    assert not changed[classes == 0].any()  # class 0 is the background
    assert changed[classes != 0].mean() > 0.95  # a blend can round back to a pixel's own value

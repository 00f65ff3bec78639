"""Augmentation keeps labels on their pixels: a test paints an object where its box says (and,
for a directed rectangle2 box, a mark at its +d1 front), augments with each method, and reads
the pixels under the NEW box. The painting and the box geometry here follow SPEC section 5
directly (d1 = (-sin phi, cos phi), half lengths), independent of the augmentation code."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from dlbatch.training.augment import augment_dl_samples

BG, BODY, FRONT = -100.0, 30.0, 120.0
MARGIN = 1.6  # bilinear blending reaches one (scaled) pixel from an edge

GEOMETRIC = [
    pytest.param({"mirror": "r"}, (60, 80), id="mirror-r"),
    pytest.param({"mirror": "c"}, (60, 80), id="mirror-c"),
    pytest.param({"mirror": "rc"}, (60, 80), id="mirror-rc"),
    pytest.param({"rotate": 90}, (64, 64), id="rotate-90"),
    pytest.param({"rotate": 180}, (60, 80), id="rotate-180"),
    pytest.param({"rotate_range": 35}, (60, 80), id="rotate_range"),
    pytest.param({"crop_percentage": 85}, (60, 80), id="crop"),
]
EXACT_METHODS = ("mirror", "rotate")


def _augment(sample, method, seed):
    return augment_dl_samples([sample], dict(method, augmentation_percentage=100), np.random.default_rng(seed))[0]


def _grid(height, width):
    return np.meshgrid(np.arange(height, dtype=float), np.arange(width, dtype=float), indexing="ij")


def _box_frame(box, height, width):
    """(u, v): every pixel centre's coordinate along d1 and d2 of the rectangle2 box."""
    row, col, phi = box[:3]
    rows, cols = _grid(height, width)
    dr, dc = rows - row, cols - col
    return dr * -np.sin(phi) + dc * np.cos(phi), dr * np.cos(phi) + dc * np.sin(phi)


def _paint_rectangle2(height, width, box, channels):
    u, v = _box_frame(box, height, width)
    inside = (np.abs(u) <= box[3]) & (np.abs(v) <= box[4])
    grey = np.where(inside, np.where(u > box[3] / 2, FRONT, BODY), BG)
    classes = np.where(inside, np.where(u > box[3] / 2, 2, 1), 0).astype(np.int32)
    image = grey[:, :, None] + np.arange(channels)[None, None, :] if channels else grey
    return image.astype(np.float32), classes


def _rect2_sample(shape, channels=3):
    height, width = shape
    box = (27.0, 36.0, 0.6, 14.0, 7.0)  # centre off the image centre, phi not a symmetric angle
    image, classes = _paint_rectangle2(height, width, box, channels)
    return {"image": image, "segmentation_image": classes, "weight_image": np.ones(shape, np.float32),
            "bbox_row": np.array([box[0]]), "bbox_col": np.array([box[1]]), "bbox_phi": np.array([box[2]]),
            "bbox_length1": np.array([box[3]]), "bbox_length2": np.array([box[4]]),
            "bbox_label_id": np.array([5], dtype=np.int64)}, box


def _grey(image):
    return image[:, :, 0] if image.ndim == 3 else image


def _new_rect2(sample):
    return tuple(float(sample[k][0]) for k in ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2"))


@pytest.mark.parametrize("method, shape", GEOMETRIC)
@pytest.mark.parametrize("channels", [3, 0])
def test_directed_rectangle2_box_and_its_front_follow_the_pixels(method, shape, channels):
    for seed in range(4):
        sample, old_box = _rect2_sample(shape, channels)
        before = copy.deepcopy(sample)
        new = _augment(sample, method, seed)
        for key in before:  # the input is never modified
            np.testing.assert_array_equal(sample[key], before[key])
        assert new["image"].shape == sample["image"].shape and new["image"].dtype == np.float32
        assert not np.array_equal(new["image"], sample["image"]), "the method must change the image"
        assert len(new["bbox_row"]) == 1 and list(new["bbox_label_id"]) == [5]
        box = _new_rect2(new)
        assert -np.pi < box[2] <= np.pi
        grey = _grey(new["image"])
        u, v = _box_frame(box, *shape)
        deep = (np.abs(u) <= box[3] - MARGIN) & (np.abs(v) <= box[4] - MARGIN)
        far = (np.abs(u) >= box[3] + MARGIN) | (np.abs(v) >= box[4] + MARGIN)
        front = deep & (u >= box[3] / 2 + MARGIN)
        back = deep & (u <= box[3] / 2 - MARGIN)
        assert front.sum() > 20 and back.sum() > 50 and far.sum() > 1000
        np.testing.assert_allclose(grey[far], BG, atol=1e-3, err_msg=f"{method} seed {seed}: object outside the box")
        np.testing.assert_allclose(grey[front], FRONT, atol=1e-3, err_msg=f"{method} seed {seed}: front mark lost")
        np.testing.assert_allclose(grey[back], BODY, atol=1e-3, err_msg=f"{method} seed {seed}: back half wrong")
        if channels:  # channels move together
            np.testing.assert_allclose(new["image"][:, :, 2] - new["image"][:, :, 0], 2.0, atol=1e-4)


def _rect1_sample(shape):
    height, width = shape
    rows, cols = _grid(height, width)
    box = (20.5, 25.5, 34.5, 49.5)  # pixel centres 21..34 x 26..49
    inside = (rows > box[0]) & (rows < box[2]) & (cols > box[1]) & (cols < box[3])
    image = np.where(inside, BODY, BG)[:, :, None].repeat(3, axis=2).astype(np.float32)
    return {"image": image, **{k: np.array([x]) for k, x in zip(("bbox_row1", "bbox_col1", "bbox_row2",
                                                                   "bbox_col2"), box)},
            "bbox_label_id": np.array([3])}


@pytest.mark.parametrize("method, shape", GEOMETRIC)
def test_rectangle1_box_encloses_the_object_pixels(method, shape):
    exact = next(iter(method)) in EXACT_METHODS
    for seed in range(4):
        sample = _rect1_sample(shape)
        new = _augment(sample, method, seed)
        assert not np.array_equal(new["image"], sample["image"])
        box = [float(new[k][0]) for k in ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")]
        assert list(new["bbox_label_id"]) == [3]
        grey = _grey(new["image"])
        rows, cols = np.nonzero(grey > (BG + BODY) / 2)
        extent = [rows.min() - 0.5, cols.min() - 0.5, rows.max() + 0.5, cols.max() + 0.5]
        np.testing.assert_allclose(box, extent, atol=0.0 if exact else 1.5, err_msg=f"{method} seed {seed}")
        if "rotate_range" in method:
            continue  # the enclosing box of a turned object also holds background
        r, c = _grid(*shape)
        deep = (r >= box[0] + MARGIN) & (r <= box[2] - MARGIN) & (c >= box[1] + MARGIN) & (c <= box[3] - MARGIN)
        far = (r <= box[0] - MARGIN) | (r >= box[2] + MARGIN) | (c <= box[1] - MARGIN) | (c >= box[3] + MARGIN)
        np.testing.assert_allclose(grey[deep], BODY, atol=1e-3)
        np.testing.assert_allclose(grey[far], BG, atol=1e-3)


def test_mirror_and_quarter_turns_copy_pixels_exactly():
    sample, _ = _rect2_sample((64, 64))
    image = sample["image"]
    seen_mirror, seen_turns = set(), set()
    for seed in range(30):
        flipped = _augment(sample, {"mirror": "rc"}, seed)["image"]
        matches = [name for name, ref in (("r", image[::-1]), ("c", image[:, ::-1]), ("rc", image[::-1, ::-1]))
                   if np.array_equal(flipped, ref)]
        assert len(matches) == 1
        seen_mirror.add(matches[0])
        turned = _augment(sample, {"rotate": 90}, seed)["image"]
        k = [k for k in (1, 2, 3) if np.array_equal(turned, np.rot90(image, k))]  # np.rot90: counter-clockwise
        assert len(k) == 1
        seen_turns.add(k[0])
    assert seen_mirror == {"r", "c", "rc"} and seen_turns == {1, 2, 3}


def test_rotate_90_keeps_the_size_of_a_non_square_image():
    sample, _ = _rect2_sample((60, 80))
    for seed in range(5):
        new = _augment(sample, {"rotate": 90}, seed)
        np.testing.assert_array_equal(new["image"], sample["image"][::-1, ::-1])


@pytest.mark.parametrize("method, shape", GEOMETRIC)
def test_segmentation_and_weights_stay_aligned_with_the_image(method, shape):
    for seed in range(3):
        sample, old_box = _rect2_sample(shape)
        new = _augment(sample, method, seed)
        grey, classes = _grey(new["image"]), new["segmentation_image"]
        assert classes.dtype == sample["segmentation_image"].dtype and classes.shape == shape
        pure = np.full(shape, -1)
        for level, cls in ((BG, 0), (BODY, 1), (FRONT, 2)):
            pure[np.abs(grey - level) < 1e-3] = cls
        assert (pure >= 0).mean() > 0.9 and {1, 2} <= set(np.unique(classes))
        np.testing.assert_array_equal(classes[pure >= 0], pure[pure >= 0])
        weight = new["weight_image"]
        if "rotate_range" not in method:
            np.testing.assert_array_equal(weight, 1.0)
            continue
        # weight 0 exactly where the pixel centre comes from outside the old image: turn the
        # new pixel centres back by the angle the box turned
        angle = np.angle(np.exp(1j * (_new_rect2(new)[2] - old_box[2])))
        rows, cols = _grid(*shape)
        cr, cc = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        dr, dc = rows - cr, cols - cc
        src_r = cr + dr * np.cos(angle) + dc * np.sin(angle)  # inverse of r' = r cos a - c sin a
        src_c = cc - dr * np.sin(angle) + dc * np.cos(angle)
        slack = np.minimum.reduce([src_r + 0.5, shape[0] - 0.5 - src_r, src_c + 0.5, shape[1] - 0.5 - src_c])
        clear = np.abs(slack) > 1e-6
        np.testing.assert_array_equal(weight[clear], np.where(slack[clear] > 0, 1.0, 0.0))
        if abs(angle) > 0.05:
            assert (weight == 0).sum() > 10


def _two_object_sample(kind):
    """A small object in the upper-left corner (label 7, value FRONT) and one in the middle
    (label 3, value BODY), as rectangle1 or rectangle2 boxes."""
    shape = (60, 80)
    rows, cols = _grid(*shape)
    boxes = {7: (1.5, 1.5, 8.5, 10.5), 3: (24.5, 30.5, 36.5, 50.5)}
    image = np.full(shape, BG)
    for label, (r1, c1, r2, c2) in boxes.items():
        image[(rows > r1) & (rows < r2) & (cols > c1) & (cols < c2)] = FRONT if label == 7 else BODY
    sample = {"image": image.astype(np.float32), "bbox_label_id": np.array(list(boxes))}
    b = np.array(list(boxes.values()))
    if kind == "rectangle1":
        sample.update({k: b[:, j] for j, k in enumerate(("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"))})
    else:  # the same boxes as rectangle2 with phi = 0 (length1 along the columns)
        sample.update(bbox_row=(b[:, 0] + b[:, 2]) / 2, bbox_col=(b[:, 1] + b[:, 3]) / 2, bbox_phi=np.zeros(2),
                      bbox_length1=(b[:, 3] - b[:, 1]) / 2, bbox_length2=(b[:, 2] - b[:, 0]) / 2)
    return sample


@pytest.mark.parametrize("kind", ["rectangle1", "rectangle2"])
def test_crop_drops_boxes_that_leave_the_image_with_their_labels(kind):
    keys = (("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2") if kind == "rectangle1"
            else ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2"))
    outcomes = set()
    for seed in range(40):
        sample = _two_object_sample(kind)
        new = _augment(sample, {"crop_percentage": 50}, seed)
        labels = list(new["bbox_label_id"])
        assert all(len(new[k]) == len(labels) for k in keys)
        corner_pixels = int((np.abs(_grey(new["image"]) - FRONT) < 1e-3).sum())
        outcomes.add(7 in labels)
        if kind == "rectangle1":
            if corner_pixels >= 4:  # the corner object is in view: its box must be there
                assert 7 in labels
            if 7 in labels:
                j = labels.index(7)
                r1, c1, r2, c2 = (float(new[k][j]) for k in keys)
                assert r2 - r1 >= 1.0 and c2 - c1 >= 1.0 and r1 >= -0.5 and c1 >= -0.5
                r, c = _grid(60, 80)
                deep = (r >= r1 + MARGIN) & (r <= r2 - MARGIN) & (c >= c1 + MARGIN) & (c <= c2 - MARGIN)
                np.testing.assert_allclose(_grey(new["image"])[deep], FRONT, atol=1e-3)
        else:
            assert np.all((new["bbox_row"] >= -0.5) & (new["bbox_row"] <= 59.5))
            assert np.all((new["bbox_col"] >= -0.5) & (new["bbox_col"] <= 79.5))
            if 7 in labels:
                j = labels.index(7)
                row, col = int(round(new["bbox_row"][j])), int(round(new["bbox_col"][j]))
                assert abs(_grey(new["image"])[row, col] - FRONT) < 1e-3  # its centre shows the object
    assert outcomes == {True, False}, "40 crops should both keep and drop the corner object"

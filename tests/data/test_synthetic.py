"""dlbatch.data.synthetic against the project's sample conventions, checked from the outside.

Boxes are recomputed here from each object's drawn pixels (`object_masks`) and the spec's
formulas: rectangle1 corners at pixel centres -+ 0.5, rectangle2 corners at
centre +- length1 d1 +- length2 d2 with d1 = (-sin phi, cos phi), d2 = (cos phi, sin phi)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch.data import detection_samples, segmentation_samples

CLASSES = (5, 9, 2, 7, 11)  # deliberately unsorted and not 0..k-1
BACKGROUND = 3
RECT1 = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
RECT2 = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")


def seg(n, **kw):
    return segmentation_samples(n, **{"class_ids": CLASSES, "background_id": BACKGROUND, **kw})


def rect2(n, **kw):
    return detection_samples(n, **{"instance_type": "rectangle2", "min_objects": 1,
                                   "return_masks": True, **kw})


def assert_same_samples(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype


def box_of(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[0] - 0.5, cols[0] - 0.5, rows[-1] + 0.5, cols[-1] + 0.5


def directions(phi):
    return np.array([-math.sin(phi), math.cos(phi)]), np.array([math.cos(phi), math.sin(phi)])


def corners(row, col, phi, l1, l2):
    d1, d2 = directions(phi)
    c = np.array([row, col])
    return np.array([c + l1 * d1 + l2 * d2, c - l1 * d1 + l2 * d2, c - l1 * d1 - l2 * d2,
                     c + l1 * d1 - l2 * d2])


def in_convex_polygon(points, poly, tol=1e-6):
    """points (N, 2) inside the convex polygon poly (K, 2), either orientation."""
    edge = np.roll(poly, -1, axis=0) - poly
    rel = points[:, None, :] - poly[None, :, :]
    cross = edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0]
    return (cross >= -tol).all(axis=1) | (cross <= tol).all(axis=1)


def shoelace(poly):
    r, c = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(r, np.roll(c, -1)) - np.dot(c, np.roll(r, -1)))


def pixel_points(mask):
    return np.argwhere(mask).astype(float)


def objects(samples, keys):
    """(sample, box values, label, mask) for every object of every sample."""
    for s in samples:
        for j in range(len(s["bbox_label_id"])):
            yield s, tuple(float(s[k][j]) for k in keys), int(s["bbox_label_id"][j]), s["object_masks"][j]


def erode(mask):
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    return out


def best_threshold_accuracy(a, b):
    """Best balanced accuracy of one threshold on uint8 values separating a from b."""
    ca = np.cumsum(np.bincount(a, minlength=256)) / len(a)
    cb = np.cumsum(np.bincount(b, minlength=256)) / len(b)
    acc = (ca + 1 - cb) / 2  # a at or below the threshold, b above
    return float(max(acc.max(), (1 - acc).max()))


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("make", [
    lambda n, s: seg(n, seed=s),
    lambda n, s: detection_samples(n, seed=s),
    lambda n, s: rect2(n, seed=s, directed_class_ids=(2,)),
], ids=["segmentation", "rectangle1", "rectangle2"])
def test_sample_i_depends_on_seed_and_i_only(make):
    few, many, again = make(4, 7), make(15, 7), make(4, 7)
    for a, b, c in zip(few, many, again):
        assert_same_samples(a, b)
        assert_same_samples(a, c)
    other = make(4, 8)
    assert not any(np.array_equal(a["image"], o["image"]) for a, o in zip(few, other))
    assert len({few[i]["image"].tobytes() for i in range(4)}) == 4


# ---------------------------------------------------------------- segmentation

@pytest.mark.parametrize("height,width,channels", [(64, 64, 3), (48, 80, 1), (40, 56, 4), (32, 32, 2)])
def test_segmentation_shapes_dtypes_and_values(height, width, channels):
    for s in seg(6, height=height, width=width, channels=channels):
        assert set(s) == {"image", "segmentation_image"}
        assert s["image"].shape == (height, width, channels) and s["image"].dtype == np.uint8
        label = s["segmentation_image"]
        assert label.shape == (height, width) and label.dtype == np.int32
        assert set(np.unique(label)) <= set(CLASSES) | {BACKGROUND}


def test_every_class_appears_and_no_mask_is_all_background():
    samples = seg(20)
    seen = set()
    for s in samples:
        label = s["segmentation_image"]
        assert (label != BACKGROUND).any()
        seen |= set(np.unique(label).tolist())
    assert seen == set(CLASSES) | {BACKGROUND}


def test_objects_cross_the_borders_and_are_clipped_there():
    samples = seg(40)
    labels = np.stack([s["segmentation_image"] for s in samples])
    fg = labels != BACKGROUND
    for border in (fg[:, 0, :], fg[:, -1, :], fg[:, :, 0], fg[:, :, -1]):
        assert border.any(axis=1).sum() >= 3  # objects reach every border in several images
    # a shape clipped at the top is not wrapped to the bottom: where an object touches the
    # top border, the bottom border below it is not the same class, except by chance
    same = (labels[:, 0, :] == labels[:, -1, :]) & fg[:, 0, :]
    assert same.sum() < 0.2 * fg[:, 0, :].sum()


def test_mask_edges_are_image_edges():
    """The label changes where the image does: no shift between mask and drawing."""
    jumps, flats = [], []
    for s in seg(20):
        img, label = s["image"].astype(float), s["segmentation_image"]
        step = np.abs(np.diff(img, axis=1)).mean(axis=2)
        change = np.diff(label, axis=1) != 0
        jumps.append(step[change])
        flats.append(step[~change])
    assert np.concatenate(jumps).mean() > 3 * np.concatenate(flats).mean()


def test_background_is_textured_not_flat():
    for s in seg(20):
        img = s["image"].astype(float)
        background = s["segmentation_image"] == BACKGROUND
        assert img[background].std(axis=0).min() > 5.0
        # slow variation (gradient, stripes, blobs) survives 8 x 8 averaging, noise does not
        blocks = img.reshape(8, 8, 8, 8, 3).mean(axis=(1, 3))
        assert blocks.std(axis=(0, 1)).max() > 6.0
        # fine texture: neighbouring background pixels differ
        both = background[:, 1:] & background[:, :-1]
        assert np.abs(np.diff(img, axis=1))[both].mean() > 2.0


def test_colour_helps_but_never_decides_alone():
    samples = seg(80)  # enough objects per class that one odd object does not decide
    img = np.stack([s["image"] for s in samples]).reshape(-1, 3)
    label = np.stack([s["segmentation_image"] for s in samples]).ravel()
    ids = [BACKGROUND, *CLASSES]
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            scores = [best_threshold_accuracy(img[label == a, ch], img[label == b, ch]) for ch in range(3)]
            assert max(scores) < 0.97, (a, b, scores)  # shape has to matter
            if a != BACKGROUND:
                assert max(scores) > 0.65, (a, b, scores)  # classes have characteristic colours
    for a in CLASSES:  # one class against everything else
        scores = [best_threshold_accuracy(img[label == a, ch], img[label != a, ch]) for ch in range(3)]
        assert max(scores) < 0.97, (a, scores)


# ---------------------------------------------------------------- rectangle1

def test_rectangle1_boxes_are_the_extent_of_the_drawn_pixels():
    samples = detection_samples(40, class_ids=CLASSES, return_masks=True, seed=1)
    touching = 0
    for s, box, label, mask in objects(samples, RECT1):
        assert label in CLASSES
        assert box == box_of(mask)
        row1, col1, row2, col2 = box
        assert -0.5 <= row1 < row2 <= 64 - 0.5 and -0.5 <= col1 < col2 <= 64 - 0.5
        touching += row1 == -0.5 or col1 == -0.5 or row2 == 63.5 or col2 == 63.5
        if not (row1 == -0.5 or col1 == -0.5 or row2 == 63.5 or col2 == 63.5):
            assert max(row2 - row1, col2 - col1) >= 64 / 6  # learnable at 32 x 32
    assert touching >= 5  # objects are clipped at the border, and boxes with them


def test_rectangle1_masks_are_the_drawn_objects_and_overlap_little():
    for s in detection_samples(30, return_masks=True, seed=2, max_objects=5):
        masks, img = s["object_masks"], s["image"].astype(float)
        assert masks.dtype == bool and masks.shape == (len(s["bbox_label_id"]), 64, 64)
        assert (masks.sum(axis=0) <= 1).all()  # no pixel belongs to two objects
        boxes = np.stack([s[k] for k in RECT1], axis=1)
        for j in range(len(boxes)):
            for k in range(j):
                (a0, b0, a1, b1), (c0, d0, c1, d1) = boxes[j], boxes[k]
                inter = max(0, min(a1, c1) - max(a0, c0)) * max(0, min(b1, d1) - max(b0, d0))
                union = (a1 - a0) * (b1 - b0) + (c1 - c0) * (d1 - d0) - inter
                assert inter / union < 0.3
        for mask in masks:  # the object differs from the pixels right around it
            core = erode(mask)
            halo = ~mask & ~erode(~mask) & (masks.sum(axis=0) == 0)
            if core.sum() >= 5 and halo.sum() >= 5:
                assert np.abs(img[core].mean(axis=0) - img[halo].mean(axis=0)).max() > 12


def test_rectangle1_empty_images_and_object_counts():
    samples = detection_samples(30, max_objects=3)
    counts = [len(s["bbox_label_id"]) for s in samples]
    assert 0 in counts and max(counts) <= 3
    empty = samples[counts.index(0)]
    for key in RECT1:
        assert empty[key].shape == (0,) and empty[key].dtype == np.float64
    assert empty["bbox_label_id"].shape == (0,) and empty["bbox_label_id"].dtype == np.int64
    assert all(2 <= len(s["bbox_label_id"]) <= 4 for s in detection_samples(20, min_objects=2))
    labels = np.concatenate([s["bbox_label_id"] for s in detection_samples(20, class_ids=CLASSES,
                                                                            min_objects=1)])
    assert set(labels.tolist()) == set(CLASSES)


# ---------------------------------------------------------------- rectangle2

def test_rectangle2_keys_and_dtypes():
    s = rect2(1, min_objects=0, max_objects=0, return_masks=False)[0]
    assert set(s) == {"image", "bbox_label_id", *RECT2}
    assert all(s[k].dtype == np.float64 and s[k].shape == (0,) for k in RECT2)
    assert s["bbox_label_id"].dtype == np.int64


def test_rectangle2_polygon_covers_the_object_and_fits_filled_rectangles():
    samples = rect2(40, height=64, width=80, class_ids=CLASSES, seed=3)
    errors = []
    for s, (row, col, phi, l1, l2), label, mask in objects(samples, RECT2):
        poly = corners(row, col, phi, l1, l2)
        assert (poly >= -0.5).all() and (poly[:, 0] <= 63.5).all() and (poly[:, 1] <= 79.5).all()
        assert in_convex_polygon(pixel_points(mask), poly).mean() >= 0.9
        assert l1 > 1.5 * l2 and 2 * l1 >= 64 / 6 and 2 * l2 >= 64 / 10  # elongated, learnable
        if label == CLASSES[0]:  # the first class draws filled rectangles
            errors.append(abs(mask.sum() - shoelace(poly)) / shoelace(poly))
    assert len(errors) >= 10 and max(errors) < 0.15 and np.mean(errors) < 0.06


def test_rectangle2_boxes_are_tight():
    for s, (row, col, phi, l1, l2), _, mask in objects(rect2(30, seed=4, directed_class_ids=(1,)), RECT2):
        d1, d2 = directions(phi)
        rel = pixel_points(mask) - [row, col]
        t1, t2 = rel @ d1, rel @ d2
        assert t1.max() >= l1 - 2 and t1.min() <= -l1 + 2
        assert t2.max() >= l2 - 2 and t2.min() <= -l2 + 2


def test_rectangle2_phi_ranges_for_directed_and_undirected_classes():
    phis = {1: [], 2: [], 3: []}
    for s, box, label, _ in objects(rect2(60, seed=5, directed_class_ids=(2,)), RECT2):
        phis[label].append(box[2])
    for label, values in phis.items():
        values = np.array(values)
        assert len(values) >= 20
        if label == 2:
            assert ((values > -math.pi) & (values <= math.pi)).all()
            assert (np.abs(values) > math.pi / 2).sum() >= 5  # the whole circle is used
        else:
            assert ((values > -math.pi / 2) & (values <= math.pi / 2)).all()


def test_direction_marker_lies_on_the_plus_d1_side():
    checked = 0
    for s, (row, col, phi, l1, l2), label, mask in objects(rect2(40, seed=6, directed_class_ids=(1, 3)),
                                                            RECT2):
        if label not in (1, 3):
            continue
        d1, _ = directions(phi)
        points = pixel_points(mask)
        t1 = (points - [row, col]) @ d1
        colour = s["image"][mask].astype(float)
        plus, minus, middle = t1 > 0.7 * l1, t1 < -0.7 * l1, np.abs(t1) < 0.3 * l1
        if min(plus.sum(), minus.sum(), middle.sum()) < 3:
            continue
        centre = colour[middle].mean(axis=0)
        assert (np.abs(colour[plus].mean(axis=0) - centre).mean()
                > np.abs(colour[minus].mean(axis=0) - centre).mean() + 30)
        checked += 1
    assert checked >= 15


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("call", [
    lambda: segmentation_samples(1, class_ids=(0, 1), background_id=0),
    lambda: segmentation_samples(1, class_ids=()),
    lambda: segmentation_samples(1, class_ids=(1, 1)),
    lambda: segmentation_samples(1, max_objects=0),
    lambda: segmentation_samples(1, seed=-1),
    lambda: segmentation_samples(1, channels=0),
    lambda: detection_samples(1, instance_type="rectangle3"),
    lambda: detection_samples(1, directed_class_ids=(1,)),
    lambda: detection_samples(1, instance_type="rectangle2", directed_class_ids=(4,)),
    lambda: detection_samples(1, min_objects=3, max_objects=2),
])
def test_invalid_arguments_are_refused(call):
    with pytest.raises(ValueError):
        call()

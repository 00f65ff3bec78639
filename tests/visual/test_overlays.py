"""Each model type's overlay on hand-made results: the picture has the raw image's size, the
marks are where the result says (checked against geometry computed here, independently of the
drawing code) and pixels away from them keep the image's values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch.core.errors import DLParamError
from dlbatch.core.plugins import manager
from dlbatch.models.segmentation_overlay import ALPHA, background_class_ids
from dlbatch.visual import class_colour_rgb, line_width_for

HP_CLASSES = {"class_ids": [1, 2, 3], "class_names": ["cat", "dog", "bird"]}


def noise(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def changed(a, b):
    return (a != b).any(axis=-1)


def detection_hp(instance_type, **more):
    return {**HP_CLASSES, "instance_type": instance_type, **more}


# ---------------------------------------------------------------- rectangle1

def test_rectangle1_outline_on_the_box_border_pixels_and_nothing_far_away():
    image = noise((120, 200, 3))
    # pixels rows 60..99, cols 80..139 in dlbatch's pixel-edge convention
    result = {"bbox_row1": [59.5], "bbox_col1": [79.5], "bbox_row2": [99.5], "bbox_col2": [139.5],
              "bbox_class_id": [2], "bbox_class_name": ["dog"], "bbox_confidence": [0.9]}
    out = manager.model_type("detection").draw_overlay(image, result, detection_hp("rectangle1"))
    assert out.shape == (120, 200, 3) and out.dtype == np.uint8
    colour = class_colour_rgb(1)  # dog is at position 1 of class_ids
    w = line_width_for(120, 200)
    for r, c in [(99, 110), (99 - w + 1, 110), (80, 80), (80, 139 - w + 1), (60 + w, 139)]:
        assert out[r, c].tolist() == list(colour), (r, c)
    for r, c in [(100, 110), (80, 79), (80, 140), (99 - w, 110), (80, 110)]:  # just outside, inside
        assert out[r, c].tolist() == image[r, c].tolist(), (r, c)
    allowed = np.zeros((120, 200), dtype=bool)
    allowed[30:100, 80:] = True  # the box and its label above its upper-left corner
    assert not changed(out, image)[~allowed].any()
    assert changed(out, image)[40:60, 80:100].any()  # the label


def test_rectangle1_label_shows_name_and_confidence_and_the_most_confident_box_wins():
    image = np.full((80, 80, 3), 128, np.uint8)
    box = {"bbox_row1": [9.5, 9.5], "bbox_col1": [9.5, 9.5], "bbox_row2": [59.5, 59.5], "bbox_col2": [59.5, 59.5]}
    result = {**box, "bbox_class_id": [1, 3], "bbox_class_name": ["cat", "bird"], "bbox_confidence": [0.3, 0.8]}
    out = manager.model_type("detection").draw_overlay(image, result, detection_hp("rectangle1"))
    assert out[59, 30].tolist() == list(class_colour_rgb(2))  # bird, drawn last
    swapped = dict(result, bbox_confidence=[0.8, 0.3])
    out = manager.model_type("detection").draw_overlay(image, swapped, detection_hp("rectangle1"))
    assert out[59, 30].tolist() == list(class_colour_rgb(0))


def test_detection_without_boxes_leaves_the_image_unchanged_and_grey_input_works():
    grey = noise((30, 40))
    empty = {"bbox_row1": [], "bbox_col1": [], "bbox_row2": [], "bbox_col2": [], "bbox_class_id": [],
             "bbox_class_name": [], "bbox_confidence": []}
    out = manager.model_type("detection").draw_overlay(grey, empty, detection_hp("rectangle1"))
    assert out.shape == (30, 40, 3) and all(np.array_equal(out[:, :, c], grey) for c in range(3))
    result = dict(empty, bbox_row1=[4.5], bbox_col1=[4.5], bbox_row2=[20.5], bbox_col2=[30.5], bbox_class_id=[1],
                  bbox_class_name=["cat"], bbox_confidence=[0.5])
    out = manager.model_type("detection").draw_overlay(grey[:, :, None], result, detection_hp("rectangle1"))
    assert out[20, 15].tolist() == list(class_colour_rgb(0))
    assert np.array_equal(out[25:, :, 0], grey[25:])


def test_detection_overlay_errors_name_the_missing_key():
    with pytest.raises(DLParamError, match="'bbox_row'"):
        manager.model_type("detection").draw_overlay(noise((8, 8, 3)), {"bbox_row1": [1.0]}, detection_hp("rectangle2"))


# ---------------------------------------------------------------- rectangle2

ROW, COL, PHI, L1, L2 = 100.0, 120.0, 0.5, 50.0, 20.0


def halcon_point(t1, t2, phi=PHI):
    """centre + t1 d1 + t2 d2 with HALCON's d1 = (-sin phi, cos phi), d2 = (cos phi, sin phi)."""
    return ROW - t1 * math.sin(phi) + t2 * math.cos(phi), COL + t1 * math.cos(phi) + t2 * math.sin(phi)


def rect2_result(phi=PHI):
    return {"bbox_row": [ROW], "bbox_col": [COL], "bbox_phi": [phi], "bbox_length1": [L1],
            "bbox_length2": [L2], "bbox_class_id": [3], "bbox_class_name": ["bird"], "bbox_confidence": [0.7]}


def away_from_outline(point, margin=3.0):
    """Whether `point` is more than `margin` from every side of the test box (local coordinates)."""
    dr, dc = point[0] - ROW, point[1] - COL
    u = abs(-math.sin(PHI) * dr + math.cos(PHI) * dc)
    v = abs(math.cos(PHI) * dr + math.sin(PHI) * dc)
    outside = u > L1 + margin or v > L2 + margin
    return outside or (u < L1 - margin and v < L2 - margin)


def at(point):
    return int(round(point[0])), int(round(point[1]))


def test_rectangle2_outline_follows_the_rotated_edges():
    image = noise((200, 240, 3), seed=2)
    out = manager.model_type("detection").draw_overlay(image, rect2_result(), detection_hp("rectangle2"))
    assert out.shape == (200, 240, 3) and out.dtype == np.uint8
    colour = list(class_colour_rgb(2))
    # the outline is line_width_for pixels wide inside the box: a point half that far inside a
    # side rounds to a pixel whose centre is still in the outline (rounding moves it < 0.71)
    inset = line_width_for(200, 240) / 2
    for t in (-0.7, -0.3, 0.3, 0.7):  # along the long sides (+-length2) and the short ones (+-length1)
        for point in (halcon_point(t * L1, L2 - inset), halcon_point(t * L1, -(L2 - inset)),
                      halcon_point(L1 - inset, t * L2), halcon_point(-(L1 - inset), t * L2)):
            assert out[at(point)].tolist() == colour, point
        # just outside the box: unchanged
        for point in (halcon_point(t * L1, L2 + 1.5), halcon_point(-(L1 + 1.5), t * L2)):
            assert out[at(point)].tolist() == image[at(point)].tolist(), point
    # the same points of the box mirrored (phi -> -phi): a wrong sense of rotation would draw there
    mirrored = [halcon_point(t * L1, s * (L2 - inset), -PHI) for t in (-0.7, -0.3, 0.3, 0.7) for s in (-1, 1)]
    mirrored = [p for p in mirrored if away_from_outline(p)]
    assert len(mirrored) >= 4
    for point in mirrored:
        assert out[at(point)].tolist() == image[at(point)].tolist(), point
    # inside, away from the outline and the direction line: unchanged
    for point in (halcon_point(-0.5 * L1, 0.5 * L2), halcon_point(0.5 * L1, -0.5 * L2)):
        assert out[at(point)].tolist() == image[at(point)].tolist()
    # far away (outside the box's circumcircle and below its top corner, where the label is): unchanged
    rows, cols = np.mgrid[:200, :240]
    top = min(halcon_point(s1 * L1, s2 * L2)[0] for s1 in (-1, 1) for s2 in (-1, 1))
    far = (np.hypot(rows - ROW, cols - COL) > math.hypot(L1, L2) + 2) & (rows > top)
    assert not changed(out, image)[far].any()


def test_rectangle2_shows_phi_from_the_centre_towards_plus_length1():
    image = noise((200, 240, 3), seed=3)
    colour = list(class_colour_rgb(2))
    out = manager.model_type("detection").draw_overlay(image, rect2_result(), detection_hp("rectangle2"))
    for t in (0.3, 0.6):  # on the line from the centre along +d1 (within a pixel) ...
        r, c = at(halcon_point(t * L1, 0))
        assert (out[r - 1:r + 2, c - 1:c + 2] == colour).all(axis=-1).any()
        r, c = at(halcon_point(-t * L1, 0))  # ... and nothing along -d1
        assert np.array_equal(out[r - 2:r + 3, c - 2:c + 3], image[r - 2:r + 3, c - 2:c + 3])
    # with a direction the line gets an arrow head near the +length1 side, and nothing else changes
    directed = manager.model_type("detection").draw_overlay(image, rect2_result(),
                                                        detection_hp("rectangle2", ignore_direction=False))
    front = halcon_point(L1, 0)
    rows, cols = np.mgrid[:200, :240]
    differs = changed(directed, out)
    assert differs.any()
    assert np.hypot(rows - front[0], cols - front[1])[differs].max() < 15


# ---------------------------------------------------------------- segmentation

def seg_case():
    image = noise((60, 80, 3), seed=4)
    m = np.zeros((60, 80), dtype=np.int32)
    m[10:30, 20:50] = 2
    m[35:51, 5:16] = 3
    return image, m


def expected_blend(pixels, colour):
    return np.round((1 - ALPHA) * pixels.astype(float) + ALPHA * np.asarray(colour, float)).astype(np.uint8)


def test_segmentation_blends_each_class_colour_and_keeps_the_background():
    image, m = seg_case()
    hp = {"class_ids": [0, 2, 3], "class_names": ["bg", "x", "y"], "ignore_class_ids": []}
    out = manager.model_type("segmentation").draw_overlay(image, {"segmentation_image": m}, hp)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert np.array_equal(out[m == 0], image[m == 0])  # class id 0 is the background
    assert np.array_equal(out[11:29, 21:49], expected_blend(image[11:29, 21:49], class_colour_rgb(1)))
    assert np.array_equal(out[36:50, 6:15], expected_blend(image[36:50, 6:15], class_colour_rgb(2)))
    for r, c, k in [(10, 30, 1), (29, 30, 1), (20, 20, 1), (20, 49, 1), (35, 10, 2)]:  # region borders
        assert out[r, c].tolist() == list(class_colour_rgb(k)), (r, c)


def test_segmentation_background_rules_and_ignore_class_ids():
    assert background_class_ids({"class_ids": [0, 1, 2], "class_names": ["0", "1", "2"]}) == {0}
    assert background_class_ids({"class_ids": [1, 2], "class_names": ["a", "b"]}) == set()
    assert background_class_ids({"class_ids": [0, 5], "class_names": ["road", "Background"]}) == {5}
    assert background_class_ids({"class_ids": [1, 2], "class_names": ["a", "b"], "ignore_class_ids": [9]}) == {9}
    image, m = seg_case()
    hp = {"class_ids": [0, 2, 3], "class_names": ["bg", "x", "y"], "ignore_class_ids": [3]}
    out = manager.model_type("segmentation").draw_overlay(image, {"segmentation_image": m}, hp)
    assert np.array_equal(out[m == 3], image[m == 3])
    assert changed(out, image)[m == 2].all()


def test_segmentation_of_the_network_size_is_resized_to_the_raw_image_and_grey_works():
    image, m = seg_case()
    grey = image[:, :, 1]
    small = m[::2, ::2]  # 30 x 40, as a network of half the size would give it
    m = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # exactly 2x: each pixel becomes 2 x 2
    hp = {"class_ids": [0, 2, 3], "class_names": ["bg", "x", "y"]}
    out = manager.model_type("segmentation").draw_overlay(grey, {"segmentation_image": small}, hp)
    assert out.shape == (60, 80, 3)
    assert np.array_equal(out[m == 0], np.repeat(grey[m == 0][:, None], 3, axis=1))
    inner = np.zeros_like(m, dtype=bool)
    inner[11:29, 21:49] = True
    assert np.array_equal(out[inner], expected_blend(np.repeat(grey[inner][:, None], 3, axis=1),
                                                     class_colour_rgb(1)))


# ---------------------------------------------------------------- classification

def cls_result(top_id, names=("cat", "dog", "bird")):
    ids = [top_id] + [c for c in (1, 2, 3) if c != top_id]
    return {"classification_class_ids": ids, "classification_class_names": [names[i - 1] for i in ids],
            "classification_confidences": [0.7, 0.2, 0.1]}


def test_classification_writes_the_top_class_in_the_upper_left_corner_only():
    image = noise((100, 150, 3), seed=5)
    out = manager.model_type("classification").draw_overlay(image, cls_result(2), HP_CLASSES)
    assert out.shape == (100, 150, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == list(class_colour_rgb(1))  # the label box in dog's colour
    diff = changed(out, image)
    assert diff[:10, :40].mean() > 0.9  # the label box (font of 10 px and up)
    assert not diff[25:].any() and not diff[:, 75:].any()
    other = manager.model_type("classification").draw_overlay(image, cls_result(3), HP_CLASSES)
    assert other[0, 0].tolist() == list(class_colour_rgb(2))


def test_classification_overlay_on_a_grey_image():
    grey = noise((40, 60), seed=6)
    out = manager.model_type("classification").draw_overlay(grey, cls_result(1), HP_CLASSES)
    assert out.shape == (40, 60, 3)
    assert np.array_equal(out[30:, :, 2], grey[30:])
    with pytest.raises(DLParamError, match="classification_class_ids"):
        manager.model_type("classification").draw_overlay(grey, {}, HP_CLASSES)

"""Suggested anchor parameters: coverage checked independently of the module (full anchor set,
the IoU written out here; rectangle2: the rotated IoU over every anchor, checked against shapely
polygons), hand cases, the search raising subscales/ratios/angles, and input errors."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch.core.errors import DLParamError, DLSampleError
from dlbatch.data import detection_samples
from dlbatch.models.detection import anchor_coverage as coverage
from dlbatch.models.detection.anchors import anchors_near, generate_anchors, generate_oriented_anchors
from dlbatch.models.detection.detection_params import collect_boxes, covered_boxes, detection_params_from_samples
from dlbatch.models.detection.matcher import match_iou
from dlbatch.models.detection.rectangle2 import Rectangle2
from dlbatch.models.detection.rotated_iou import rotated_pairwise_iou

try:
    import shapely
except ImportError:  # the polygon cross-checks of the rotated IoU need shapely (dev extra)
    shapely = None

KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")


def iou_matrix(a, b):
    """IoU written out independently of boxes.py."""
    ih = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iw = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ih * iw
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def full_coverage(samples, height, width, params, threshold=0.5):
    """(share of boxes with an anchor of IoU >= threshold, share the matcher gives such an
    anchor), over every anchor of the suggested setting, image by image."""
    anchors = generate_anchors(height, width, params["min_level"], params["max_level"],
                               params["anchor_num_subscales"], params["anchor_aspect_ratios"]).boxes
    reachable, matched_ok, total = 0, 0, 0
    for s in samples:
        boxes = np.stack([np.asarray(s[k], float).reshape(-1) for k in KEYS], axis=1)
        if not len(boxes):
            continue
        iou = iou_matrix(boxes, anchors)
        matched = match_iou(iou, positive_threshold=threshold, negative_threshold=min(0.4, threshold))
        total += len(boxes)
        reachable += int((iou.max(axis=1) >= threshold).sum())
        matched_ok += sum(bool(np.any((matched == g) & (iou[g] >= threshold))) for g in range(len(boxes)))
    return reachable / total, matched_ok / total


def drawn_samples(n, height, width, seed, size=(6.0, 60.0), ratio=(1 / 3, 3.0), per_image=3):
    """Boxes with log-uniform size and aspect ratio, uniform position inside the image."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = int(rng.integers(0, per_image + 1))
        s = np.exp(rng.uniform(*np.log(size), m))
        r = np.exp(rng.uniform(*np.log(ratio), m))
        h, w = np.minimum(s * np.sqrt(r), height), np.minimum(s / np.sqrt(r), width)
        r1, c1 = rng.uniform(-0.5, height - 0.5 - h), rng.uniform(-0.5, width - 0.5 - w)
        out.append({"bbox_row1": r1, "bbox_col1": c1, "bbox_row2": r1 + h, "bbox_col2": c1 + w})
    return out


def check_suggestion(samples, height, width, **kw):
    params = detection_params_from_samples(samples, width, height, **kw)
    reachable, matched = full_coverage(samples, height, width, params, kw.get("iou_threshold", 0.5))
    assert params["coverage"] == pytest.approx(matched, abs=1e-12)
    assert reachable >= matched
    assert 2 ** params["max_level"] <= min(height, width)
    assert params["min_level"] <= params["max_level"]
    assert params["anchor_aspect_ratios"] == sorted(params["anchor_aspect_ratios"])
    assert params["anchors_per_location"] == params["anchor_num_subscales"] * len(params["anchor_aspect_ratios"])
    return params


@pytest.mark.parametrize("height, width, seed", [(64, 64, 0), (128, 96, 1)])
def test_synthetic_detection_samples_get_95_percent_coverage(height, width, seed):
    samples = detection_samples(120, height=height, width=width, class_ids=(1, 2, 3), seed=seed)
    params = check_suggestion(samples, height, width)
    assert params["coverage"] >= 0.95 and params["coverage_goal_met"]
    assert params["num_boxes"] == sum(len(s["bbox_row1"]) for s in samples)
    assert params["instance_type"] == "rectangle1"


@pytest.mark.parametrize("ratio, size, goal", [((1 / 3, 3.0), (6.0, 60.0), 0.95),
                                               ((0.1, 10.0), (8.0, 40.0), 0.95),
                                               ((0.8, 1.25), (4.0, 100.0), 0.99)])
def test_boxes_from_a_known_distribution_get_the_coverage_goal(ratio, size, goal):
    samples = drawn_samples(150, 128, 128, seed=3, size=size, ratio=ratio)
    params = check_suggestion(samples, 128, 128, coverage_goal=goal)
    assert params["coverage"] >= goal and params["coverage_goal_met"]


def test_wider_ratio_spread_needs_more_ratios():
    narrow = detection_params_from_samples(drawn_samples(150, 128, 128, 5, ratio=(0.9, 1.1)), 128, 128)
    wide = detection_params_from_samples(drawn_samples(150, 128, 128, 5, ratio=(0.1, 10.0)), 128, 128)
    assert narrow["anchor_aspect_ratios"] == [1.0]
    assert len(wide["anchor_aspect_ratios"]) >= 2
    assert min(wide["anchor_aspect_ratios"]) < 0.5 < 2 < max(wide["anchor_aspect_ratios"])
    # the search raised the ratios, which were short, rather than the subscales
    assert wide["anchor_num_subscales"] <= 2 and wide["anchors_per_location"] <= 8


def test_one_box_size_on_the_anchor_grid_by_hand():
    # 32 x 32 boxes (t = log2(32 / 4) = 3) centred on level-3 cells of a 128 x 128 image:
    # each equals an anchor of level 3, one subscale, ratio 1
    samples = [{"bbox_row1": [27.5], "bbox_col1": [3.5], "bbox_row2": [59.5], "bbox_col2": [35.5]},
               {"bbox_row1": [67.5, 3.5], "bbox_col1": [91.5, 19.5], "bbox_row2": [99.5, 35.5],
                "bbox_col2": [123.5, 51.5]}]
    params = check_suggestion(samples, 128, 128)
    assert (params["min_level"], params["max_level"], params["anchor_num_subscales"],
            params["anchor_aspect_ratios"], params["coverage"]) == (3, 3, 1, [1.0], 1.0)
    assert params["num_anchors"] == 16 * 16


def test_levels_respect_the_bounds_and_the_image_size():
    samples = drawn_samples(60, 32, 32, seed=2, size=(3.0, 30.0))
    params = check_suggestion(samples, 32, 32, lowest_level=2)
    assert params["min_level"] >= 2 and params["max_level"] <= 5
    params = check_suggestion(samples, 32, 32, highest_level=2)
    assert params["max_level"] <= 2


def test_short_coverage_is_reported_when_the_caps_stop_the_search():
    samples = drawn_samples(100, 128, 128, seed=4, ratio=(0.05, 20.0))
    params = check_suggestion(samples, 128, 128, max_num_subscales=1, max_num_aspect_ratios=1)
    assert not params["coverage_goal_met"] and params["coverage"] < 0.95
    assert params["anchor_num_subscales"] == 1 and len(params["anchor_aspect_ratios"]) == 1


@pytest.mark.parametrize("seed", range(4))
def test_covered_boxes_equal_matching_against_every_anchor(seed):
    """covered_boxes looks only at anchors near each image's boxes; the full matching agrees."""
    rng = np.random.default_rng(seed)
    samples = drawn_samples(40, 96, 64, seed=seed, size=(2.0, 70.0), ratio=(0.2, 5.0), per_image=5)
    boxes, owner = collect_boxes(samples, 96, 64)
    n = int(rng.integers(1, 4))
    ratios = sorted(rng.uniform(0.3, 3.0, int(rng.integers(1, 4))).tolist())
    low = int(rng.integers(0, 3))
    high = low + int(rng.integers(0, 3))
    threshold = float(rng.choice([0.3, 0.5, 0.7]))
    got = covered_boxes(boxes, owner, 96, 64, low, high, n, ratios, threshold)
    params = dict(min_level=low, max_level=high, anchor_num_subscales=n, anchor_aspect_ratios=ratios)
    reachable, matched = full_coverage(samples, 96, 64, params, threshold)
    assert got.mean() == pytest.approx(matched, abs=1e-12)


def test_empty_input_fails_with_a_clear_error():
    with pytest.raises(DLSampleError, match="no samples"):
        detection_params_from_samples([], 64, 64)
    empty = detection_samples(3, height=32, width=32, max_objects=0)
    with pytest.raises(DLSampleError, match="the 3 samples hold no boxes"):
        detection_params_from_samples(empty, 32, 32)


@pytest.mark.parametrize("change, message", [
    (lambda s: s[1].pop("bbox_col1"), r"sample 1 has no key 'bbox_col1'"),
    (lambda s: s[2].update(bbox_row2=np.array([1.0])), r"sample 2: box 0 is degenerate.*'bbox_row2'"),
    (lambda s: s[0].update(bbox_col2=np.array([80.0])), r"sample 0: box 0 lies outside the image.*'bbox_col2'"),
    (lambda s: s[1].update(bbox_row1=np.array([np.inf])), r"sample 1: 'bbox_row1' has a non-finite value"),
    (lambda s: s[2].update(image=np.zeros((32, 64, 3))), r"sample 2: 'image' is 32 x 64 but .* 64 x 64"),
])
def test_bad_samples_name_the_sample_and_key(change, message):
    samples = [{"image": np.zeros((64, 64, 3)), "bbox_row1": np.array([2.0]), "bbox_col1": np.array([3.0]),
                "bbox_row2": np.array([20.0]), "bbox_col2": np.array([30.0])} for _ in range(3)]
    change(samples)
    with pytest.raises(DLSampleError, match=message):
        detection_params_from_samples(samples, 64, 64)


@pytest.mark.parametrize("kw, message", [
    (dict(image_width=0), "image_width must be >= 1"),
    (dict(coverage_goal=1.5), r"coverage_goal must be a number in \(0, 1\]"),
    (dict(iou_threshold=0), r"iou_threshold must be a number in \(0, 1\]"),
    (dict(lowest_level=6), "allows levels up to 5"),
    (dict(highest_level=1, lowest_level=2), "highest_level must be >= 2"),
    (dict(max_num_subscales=0), "max_num_subscales must be >= 1"),
])
def test_bad_parameters(kw, message):
    samples = drawn_samples(5, 32, 48, seed=0)
    args = dict(image_width=48, image_height=32)
    args.update(kw)
    with pytest.raises(DLParamError, match=message):
        detection_params_from_samples(samples, **args)


# --- rectangle1 results are those of the suggestion before rectangle2 (pinned) ---------------------------------

@pytest.mark.parametrize("make, width, height, kw, expected", [
    (lambda: detection_samples(120, height=64, width=96, seed=0), 96, 64, {},
     dict(min_level=1, max_level=3, anchor_num_subscales=1, anchor_aspect_ratios=[1.0], coverage=0.956,
          num_boxes=250, anchors_per_location=1, num_anchors=2016)),
    (lambda: drawn_samples(150, 128, 128, seed=3, size=(8.0, 40.0), ratio=(0.1, 10.0)), 128, 128, {},
     dict(min_level=1, max_level=3, anchor_num_subscales=2, anchor_aspect_ratios=[0.2, 1.0, 4.71],
          coverage=219 / 221, num_boxes=221, anchors_per_location=6, num_anchors=32256)),
    (lambda: drawn_samples(150, 128, 128, seed=3, size=(6.0, 60.0), ratio=(1 / 3, 3.0)), 128, 128,
     dict(coverage_goal=0.99),
     dict(min_level=0, max_level=4, anchor_num_subscales=2, anchor_aspect_ratios=[0.537, 1.66], coverage=1.0,
          num_boxes=221, anchors_per_location=4, num_anchors=87296)),
])
def test_rectangle1_suggestions_are_unchanged(make, width, height, kw, expected):
    """Values of the rectangle1-only suggestion (commit 647368d); instance_type and
    ignore_direction, given or not, leave them alone."""
    samples = make()
    goal = kw.get("coverage_goal", 0.95)
    for extra in ({}, dict(instance_type="rectangle1"), dict(ignore_direction=False)):
        params = detection_params_from_samples(samples, width, height, **kw, **extra)
        assert list(params) == ["instance_type", "min_level", "max_level", "anchor_num_subscales",
                                "anchor_aspect_ratios", "coverage", "coverage_goal", "coverage_goal_met", "num_boxes",
                                "anchors_per_location", "num_anchors"]
        assert params == dict(expected, instance_type="rectangle1", coverage=pytest.approx(expected["coverage"]),
                              coverage_goal=goal, coverage_goal_met=True)


# --- rectangle2 ---------------------------------------------------------------------------------------------------

KEYS2 = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")


def oriented_samples(n, height, width, seed, angle, size=(8.0, 48.0), ratio=(1.5, 4.0), per_image=3):
    """rectangle2 boxes: size 2 sqrt(l1 l2) and ratio l1 / l2 log-uniform, centre uniform in the
    image, phi = angle(rng, m) (the distribution under test)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = int(rng.integers(0, per_image + 1))
        s = np.exp(rng.uniform(*np.log(size), m))
        r = np.exp(rng.uniform(*np.log(ratio), m))
        out.append({"bbox_row": rng.uniform(0, height - 1, m), "bbox_col": rng.uniform(0, width - 1, m),
                    "bbox_phi": angle(rng, m), "bbox_length1": s * np.sqrt(r) / 2, "bbox_length2": s / np.sqrt(r) / 2,
                    "bbox_label_id": np.ones(m, dtype=np.int64)})
    return out


def uniform_half_turn(rng, m):
    return rng.uniform(-np.pi / 2, np.pi / 2, m)


def uniform_full_turn(rng, m):
    return rng.uniform(-np.pi, np.pi, m)


def two_clusters(a, b, spread=0.03):
    return lambda rng, m: np.where(rng.random(m) < 0.5, a, b) + rng.normal(0.0, spread, m)


def stacked(samples, keys=KEYS2):
    return [np.stack([np.asarray(s[k], float).reshape(-1) for k in keys], axis=1) for s in samples]


def polygon_corners(b):
    """(N, 4, 2) corners (row, col) from the SPEC: d1 = (-sin phi, cos phi), d2 = (cos phi, sin phi),
    half lengths l1, l2 (written out here, independently of rotated_iou.py)."""
    sin, cos = np.sin(b[:, 2]), np.cos(b[:, 2])
    d1 = np.stack([-sin, cos], axis=1) * b[:, 3:4]
    d2 = np.stack([cos, sin], axis=1) * b[:, 4:5]
    return np.stack([b[:, :2] + p * d1 + q * d2 for p, q in ((1, 1), (-1, 1), (-1, -1), (1, -1))], axis=1)


def shapely_pair_iou(a, b):
    """IoU of a[k] with b[k] from shapely polygons (x = col, y = row)."""
    pa, pb = (shapely.polygons(polygon_corners(x)[..., ::-1]) for x in (a, b))
    inter = shapely.area(shapely.intersection(pa, pb))
    return inter / (shapely.area(pa) + shapely.area(pb) - inter)


def points_its_way(phi_box, phi_anchor):
    """|phi_box - phi_anchor| < pi/2 on the full circle."""
    return np.abs((phi_box - phi_anchor + np.pi) % (2 * np.pi) - np.pi) < np.pi / 2


def oriented_coverage(samples, height, width, params, threshold=0.5, ignore_direction=None, rng=None):
    """Share of boxes the matcher gives an anchor with rotated IoU >= threshold (pointing the box's
    way unless ignore_direction), over EVERY oriented anchor of the setting, image by image. The IoU
    matrix is rotated_iou's; with shapely, every pair that decides (IoU >= threshold - 0.1) and a
    random sample of the others are recomputed from polygons and must agree."""
    ignore = params["ignore_direction"] if ignore_direction is None else ignore_direction
    anchors = generate_oriented_anchors(height, width, params["min_level"], params["max_level"],
                                        params["anchor_num_subscales"], params["anchor_aspect_ratios"],
                                        params["anchor_angles"]).boxes
    rng = rng or np.random.default_rng(0)
    ok, total = 0, 0
    for boxes in stacked(samples):
        if not len(boxes):
            continue
        iou = rotated_pairwise_iou(boxes, anchors)
        if shapely is not None:
            gi, ai = np.nonzero(iou >= threshold - 0.1)
            others = np.flatnonzero((iou < threshold - 0.1).reshape(-1))
            pick = rng.choice(others, min(len(others), 200), replace=False)
            gi, ai = np.r_[gi, pick // len(anchors)], np.r_[ai, pick % len(anchors)]
            np.testing.assert_allclose(iou[gi, ai], shapely_pair_iou(boxes[gi], anchors[ai]), atol=1e-9)
        matched = match_iou(iou, positive_threshold=threshold, negative_threshold=min(0.4, threshold))
        for g in range(len(boxes)):
            good = (matched == g) & (iou[g] >= threshold)
            if not ignore:
                good &= points_its_way(boxes[g, 2], anchors[:, 2])
            ok += bool(good.any())
        total += len(boxes)
    return ok / total


def check_oriented(samples, height, width, **kw):
    params = detection_params_from_samples(samples, width, height, **kw)
    ignore = kw.get("ignore_direction", True)
    assert params["instance_type"] == "rectangle2" and params["ignore_direction"] is ignore
    angles = params["anchor_angles"]
    assert angles == sorted(set(angles))
    half = np.pi / 2 if ignore else np.pi
    assert all(-half < a <= half for a in angles)
    assert params["anchor_aspect_ratios"] == sorted(params["anchor_aspect_ratios"])
    assert params["anchors_per_location"] == (params["anchor_num_subscales"] * len(params["anchor_aspect_ratios"])
                                              * len(angles))
    assert params["num_anchors"] == len(generate_oriented_anchors(
        height, width, params["min_level"], params["max_level"], params["anchor_num_subscales"],
        params["anchor_aspect_ratios"], angles))
    assert params["num_boxes"] == sum(len(b) for b in stacked(samples))
    measured = oriented_coverage(samples, height, width, params, kw.get("iou_threshold", 0.5))
    assert params["coverage"] == pytest.approx(measured, abs=1e-12)
    return params, measured


@pytest.mark.parametrize("angle, ignore_direction, ratio, most_anchors", [
    (uniform_half_turn, True, (1.5, 4.0), 12),
    (uniform_half_turn, True, (3.0, 8.0), 24),
    (two_clusters(0.3, -1.2), True, (1.5, 4.0), 3),
    (uniform_full_turn, False, (1.5, 4.0), 24),
    (uniform_full_turn, True, (1.5, 4.0), 12),  # directed boxes, direction ignored
    (two_clusters(2.5, -0.4), False, (2.0, 5.0), 3),
])
def test_oriented_boxes_from_known_distributions_reach_the_coverage_goal(angle, ignore_direction, ratio,
                                                                         most_anchors):
    samples = oriented_samples(60, 64, 96, seed=7, angle=angle, ratio=ratio)
    params, measured = check_oriented(samples, 64, 96, ignore_direction=ignore_direction)
    assert measured >= 0.95 and params["coverage_goal_met"]
    # the search raised what was short (mostly the angles), not every count
    assert params["anchors_per_location"] <= most_anchors


def test_clustered_angles_get_one_anchor_angle_per_cluster():
    samples = oriented_samples(60, 64, 96, seed=8, angle=two_clusters(0.3, -1.2))
    params, _ = check_oriented(samples, 64, 96)
    assert len(params["anchor_angles"]) == 2 and params["anchors_per_location"] == 2
    assert params["anchor_angles"] == pytest.approx([-1.2, 0.3], abs=0.02)


def test_uniform_angles_need_more_angles_and_directed_boxes_twice_as_many():
    undirected = oriented_samples(60, 64, 96, seed=9, angle=uniform_half_turn, ratio=(3.0, 6.0))
    directed = oriented_samples(60, 64, 96, seed=9, angle=uniform_full_turn, ratio=(3.0, 6.0))
    half, _ = check_oriented(undirected, 64, 96)
    full, _ = check_oriented(directed, 64, 96, ignore_direction=False)
    assert len(half["anchor_angles"]) >= 4
    assert len(full["anchor_angles"]) >= 1.5 * len(half["anchor_angles"])
    # the angles spread over the period: no gap between neighbours (around the circle) is much wider than even
    for params, period in ((half, np.pi), (full, 2 * np.pi)):
        a = np.array(params["anchor_angles"])
        gaps = np.diff(np.r_[a, a[0] + period])
        assert gaps.max() < 2.5 * period / len(a)


def test_opposite_directions_need_two_angles_only_when_the_direction_counts():
    samples = oriented_samples(60, 64, 96, seed=10, angle=two_clusters(0.5, 0.5 - np.pi), ratio=(2.0, 4.0))
    undirected, _ = check_oriented(samples, 64, 96)
    directed, _ = check_oriented(samples, 64, 96, ignore_direction=False)
    assert undirected["anchor_angles"] == pytest.approx([0.5], abs=0.02)
    assert directed["anchor_angles"] == pytest.approx([0.5 - np.pi, 0.5], abs=0.02)
    # the undirected suggestion's anchors point the wrong way for about half of the boxes
    assert oriented_coverage(samples, 64, 96, undirected, ignore_direction=False) < 0.7


@pytest.mark.parametrize("ignore_direction", [True, False])
def test_angles_at_the_end_of_the_range_stay_in_it(ignore_direction):
    """Boxes at the end +-0.01 of the range, written as -end + 0.01 and end - 0.01: their centre
    is the end itself, which rounds past it (to 1.5708 > pi/2 or -1.5708 < -pi/2) and must come
    back as the end."""
    end = np.pi / 2 if ignore_direction else np.pi
    samples = [{"bbox_row": [10.0, 40.0], "bbox_col": [20.0 + i, 70.0 - i], "bbox_phi": [-end + 0.01, end - 0.01],
                "bbox_length1": [12.0, 12.0], "bbox_length2": [4.0, 4.0]} for i in range(10)]
    params, measured = check_oriented(samples, 64, 96, ignore_direction=ignore_direction)
    assert params["anchor_angles"] == [end] and measured == 1.0
    if ignore_direction:  # with the direction, those boxes point opposite ways
        params, measured = check_oriented(samples, 64, 96, ignore_direction=False)
        assert params["anchor_angles"] == pytest.approx([-end + 0.01, end - 0.01], abs=1e-4) and measured == 1.0


@pytest.mark.parametrize("ignore_direction", [True, False])
def test_synthetic_oriented_samples_reach_the_coverage_goal(ignore_direction):
    samples = detection_samples(50, height=64, width=96, class_ids=(1, 2, 3), seed=4, instance_type="rectangle2",
                                directed_class_ids=(2,))
    params, measured = check_oriented(samples, 64, 96, ignore_direction=ignore_direction)
    assert measured >= 0.95 and params["coverage_goal_met"]


def test_oriented_search_stops_at_the_angle_cap_and_reports_the_shortfall():
    samples = oriented_samples(60, 64, 96, seed=12, angle=uniform_half_turn, ratio=(6.0, 10.0))
    params, measured = check_oriented(samples, 64, 96, max_num_angles=2, max_num_subscales=1, max_num_aspect_ratios=1)
    assert len(params["anchor_angles"]) <= 2 and not params["coverage_goal_met"] and measured < 0.95


def full_oriented_cover(boxes, owner, height, width, low, high, n, ratios, angles, thresholds, ignore_direction):
    """covered_boxes' answer per threshold from matching each image's boxes against every oriented anchor."""
    anchors = generate_oriented_anchors(height, width, low, high, n, ratios, angles).boxes
    covered = {threshold: np.zeros(len(boxes), dtype=bool) for threshold in thresholds}
    for image in np.unique(owner):
        index = np.flatnonzero(owner == image)
        iou = Rectangle2().pairwise_iou(boxes[index], anchors)
        for threshold in thresholds:
            matched = match_iou(iou, positive_threshold=threshold, negative_threshold=min(0.4, threshold))
            for g, box in enumerate(index):
                good = (matched == g) & (iou[g] >= threshold)
                if not ignore_direction:
                    good &= points_its_way(boxes[box, 2], anchors[:, 2])
                covered[threshold][box] = good.any()
    return covered


@pytest.mark.parametrize("seed", range(6))
def test_oriented_covered_boxes_equal_matching_against_every_anchor(seed):
    """covered_boxes enumerates only the pairs that can reach the threshold; matching against
    every anchor agrees, at thresholds below 1/2 (no centre test) and from 1/2 on."""
    rng = np.random.default_rng(seed)
    ignore = bool(seed % 2)
    samples = oriented_samples(16, 48, 64, seed, uniform_half_turn if ignore else uniform_full_turn,
                               size=(3.0, 40.0), ratio=(0.4, 6.0), per_image=6)
    boxes, owner = collect_boxes(samples, 48, 64, Rectangle2(ignore))
    n = int(rng.integers(1, 4))
    ratios = sorted(rng.uniform(0.5, 4.0, int(rng.integers(1, 3))).tolist())
    m = int(rng.integers(1, 6))
    angles = (np.arange(m) * (np.pi if ignore else 2 * np.pi) / m + rng.uniform(-0.5, 0.5)).tolist()
    low = int(rng.integers(1, 3))
    high = low + int(rng.integers(0, 3))
    thresholds = (0.3, 0.45, 0.5, 0.7)
    want = full_oriented_cover(boxes, owner, 48, 64, low, high, n, ratios, angles, thresholds, ignore)
    for threshold in thresholds:
        got = covered_boxes(boxes, owner, 48, 64, low, high, n, ratios, threshold, angles=angles,
                            ignore_direction=ignore)
        np.testing.assert_array_equal(got, want[threshold])
    assert 0 < want[0.5].mean() < 1 or 0 < want[0.3].mean() < 1  # the case decides something


@pytest.mark.parametrize("centre_col, threshold, expected", [
    (63.5, 0.4, [True, True]),    # B keeps only anchors whose centre lies outside B's ... (IoU 0.41)
    (63.5, 0.45, [False, True]),
    (63.5, 0.5, [False, True]),
    (59.5, 0.5, [True, True]),    # B keeps the anchors with its centre on their border: IoU exactly 1/2
])
def test_oriented_cover_by_hand_where_the_centre_test_does_not_hold(centre_col, threshold, expected):
    """B: 64 x 32 (l1 = 32 along the columns), C: 48 x 32 at the same centre, anchors 32 x 32 every
    8 pixels. C wins the anchors near the common centre (IoU >= 0.54 vs B's 0.5), so B keeps anchors
    half outside: with the centre 4 px off the grid those at +-20 px (IoU 896 / 2176 = 0.41), whose
    centre B's centre is not in; on the grid those at +-16 px (IoU 1/2, the centre on their border)."""
    boxes = np.array([[27.5, centre_col, 0.0, 32.0, 16.0], [27.5, centre_col, 0.0, 24.0, 16.0]])
    owner = np.zeros(2, dtype=np.int64)
    got = covered_boxes(boxes, owner, 64, 128, 3, 3, 1, [1.0], threshold, angles=[0.0])
    want = full_oriented_cover(boxes, owner, 64, 128, 3, 3, 1, [1.0], [0.0], [threshold], True)[threshold]
    assert got.tolist() == want.tolist() == expected


def test_oriented_verification_clips_few_pairs(monkeypatch):
    """The rotated matching cost: the exact clipping runs on a small share of the (box, anchor)
    pairs of each image (anchors.anchors_near, grown by the largest oriented anchor of a level,
    would keep most of them)."""
    clipped = []
    original = coverage.intersection_area
    monkeypatch.setattr(coverage, "intersection_area", lambda a, b: clipped.append(len(a)) or original(a, b))
    samples = detection_samples(40, height=128, width=128, seed=5, instance_type="rectangle2",
                                directed_class_ids=(2,))
    boxes, owner = collect_boxes(samples, 128, 128, Rectangle2(False))
    angles = np.linspace(-np.pi, np.pi, 12, endpoint=False).tolist()
    covered = covered_boxes(boxes, owner, 128, 128, 2, 5, 3, [0.5, 2.0, 4.0], 0.5, angles=angles,
                            ignore_direction=False)
    anchors = generate_oriented_anchors(128, 128, 2, 5, 3, [0.5, 2.0, 4.0], angles)
    all_pairs = len(boxes) * len(anchors)
    near_pairs = sum(int((owner == i).sum()) * len(anchors_near(anchors, boxes[owner == i])) for i in np.unique(owner))
    assert covered.mean() > 0.95
    assert 0 < sum(clipped) < 0.02 * all_pairs and near_pairs > 0.5 * all_pairs


def test_instance_type_comes_from_the_keys_or_the_argument():
    oriented = oriented_samples(20, 64, 96, seed=13, angle=uniform_half_turn)
    assert detection_params_from_samples(oriented, 96, 64)["instance_type"] == "rectangle2"
    assert detection_params_from_samples(oriented, 96, 64, instance_type="rectangle2")["instance_type"] == "rectangle2"
    both = [dict(s, bbox_row1=[], bbox_col1=[], bbox_row2=[], bbox_col2=[]) for s in oriented]
    with pytest.raises(DLSampleError, match="both rectangle1 keys .* pass instance_type"):
        detection_params_from_samples(both, 96, 64)
    assert detection_params_from_samples(both, 96, 64, instance_type="rectangle2")["num_boxes"] > 0
    with pytest.raises(DLSampleError, match="the 20 samples hold no boxes"):
        detection_params_from_samples(both, 96, 64, instance_type="rectangle1")


def test_oriented_empty_input_fails_with_a_clear_error():
    with pytest.raises(DLSampleError, match="no samples"):
        detection_params_from_samples([], 64, 64, instance_type="rectangle2")
    empty = detection_samples(3, height=32, width=32, max_objects=0, instance_type="rectangle2")
    with pytest.raises(DLSampleError, match=r"the 3 samples hold no boxes.*\(bbox_row \.\.\. bbox_length2\)"):
        detection_params_from_samples(empty, 32, 32)
    with pytest.raises(DLSampleError, match="hold no box keys: rectangle1 boxes need"):
        detection_params_from_samples([{"image": np.zeros((32, 32))}], 32, 32)


@pytest.mark.parametrize("change, message", [
    (lambda s: s[1].pop("bbox_phi"), r"sample 1 has no key 'bbox_phi'"),
    (lambda s: s[2].update(bbox_length2=np.array([0.0])), r"sample 2: box 0 is degenerate.*'bbox_length2'"),
    (lambda s: s[0].update(bbox_col=np.array([70.0])), r"sample 0: box 0 has its centre outside the image.*"
                                                        r"'bbox_col'"),
    (lambda s: s[1].update(bbox_phi=np.array([np.nan])), r"sample 1: 'bbox_phi' has a non-finite value"),
    (lambda s: s[2].update(bbox_length1=np.array([5.0, 6.0])), r"sample 2: 'bbox_length1' has 2 values"),
    (lambda s: s[2].update(image=np.zeros((32, 64, 3))), r"sample 2: 'image' is 32 x 64 but .* 64 x 64"),
])
def test_bad_oriented_samples_name_the_sample_and_key(change, message):
    samples = [{"image": np.zeros((64, 64, 3)), "bbox_row": np.array([20.0]), "bbox_col": np.array([30.0]),
                "bbox_phi": np.array([0.3]), "bbox_length1": np.array([12.0]), "bbox_length2": np.array([4.0])}
               for _ in range(3)]
    change(samples)
    with pytest.raises(DLSampleError, match=message):
        detection_params_from_samples(samples, 64, 64)


@pytest.mark.parametrize("kw, error, message", [
    (dict(instance_type="rectangle3"), DLParamError, "unknown instance_type 'rectangle3'"),
    (dict(ignore_direction="no"), DLParamError, "ignore_direction must be True or False"),
    (dict(ignore_direction=None), DLParamError, "ignore_direction must be True or False"),
    (dict(max_num_angles=0), DLParamError, "max_num_angles must be >= 1"),
    (dict(max_num_angles=2.5), DLParamError, "max_num_angles must be an integer"),
    (dict(instance_type="rectangle1"), DLSampleError, "sample 0 has no key 'bbox_row1'"),
])
def test_bad_oriented_parameters(kw, error, message):
    samples = oriented_samples(5, 32, 48, seed=0, angle=uniform_half_turn, per_image=2)
    with pytest.raises(error, match=message):
        detection_params_from_samples(samples, 48, 32, **kw)


def test_oriented_covered_boxes_need_the_angles():
    with pytest.raises(DLParamError, match="need the anchor angles"):
        covered_boxes(np.array([[10.0, 10.0, 0.0, 5.0, 2.0]]), np.zeros(1, dtype=np.int64), 32, 32, 2, 3, 1, [1.0])

"""augment_dl_samples beyond geometry: HALCON's parameter names and checks, which samples get
augmented, brightness, determinism for resume, and phi's range for rectangle2 boxes."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from dlbatch.core.errors import DLParamError, DLSampleError
from dlbatch.training.augment import AugmentParams, augment_dl_samples

ALL_ON = {"augmentation_percentage": 100, "mirror": "rc", "rotate": 90, "rotate_range": 20,
          "brightness_variation": 30, "brightness_variation_spot": 40, "crop_percentage": 70}


def _samples(n, *, height=24, width=24, seed=0, lo=-127.0, hi=128.0):
    """Random images (no symmetry, so any geometric method changes them) with every label kind."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({"image": rng.uniform(lo, hi, (height, width, 3)).astype(np.float32),
                    "segmentation_image": rng.integers(0, 3, (height, width)).astype(np.int32),
                    "weight_image": np.ones((height, width), np.float32),
                    "image_label_id": i % 3,
                    "bbox_row": np.array([11.0]), "bbox_col": np.array([12.0]), "bbox_phi": np.array([0.3]),
                    "bbox_length1": np.array([6.0]), "bbox_length2": np.array([3.0]),
                    "bbox_label_id": np.array([1])})
    return out


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_from_dict_reads_halcon_names_and_defaults():
    p = AugmentParams.from_dict(ALL_ON)
    assert p.enabled_methods() == ("mirror", "rotate", "rotate_range", "brightness_variation",
                                   "brightness_variation_spot", "crop_percentage")
    assert AugmentParams.from_dict(p.to_dict()) == p
    default = AugmentParams.from_dict({})
    assert default.augmentation_percentage == 50 and default.enabled_methods() == ()
    assert AugmentParams.from_dict(None) == default
    assert AugmentParams.from_dict({"ignore_direction": "true"}).ignore_direction is True


@pytest.mark.parametrize("params, fragment", [
    ({"mirorr": "r"}, "unknown augmentation parameter 'mirorr'"),
    ({"mirror": "x"}, "'mirror' must be one of ['off', 'r', 'c', 'rc']"),
    ({"rotate": 45}, "'rotate' must be one of [0, 90, 180]"),
    ({"rotate": True}, "'rotate' must be one of"),
    ({"rotate_range": -1}, "'rotate_range' must be >= 0"),
    ({"augmentation_percentage": 150}, "'augmentation_percentage' must be >= 0 and <= 100"),
    ({"augmentation_percentage": "50"}, "'augmentation_percentage' must be a number"),
    ({"brightness_variation": float("nan")}, "'brightness_variation' must be a number"),
    ({"brightness_variation_spot": -3}, "'brightness_variation_spot' must be >= 0"),
    ({"crop_percentage": 0}, "'crop_percentage' must be >= 1 and <= 100"),
    ({"crop_percentage": "on"}, "'crop_percentage' must be 'off' or a percentage"),
    ({"ignore_direction": "yes"}, "'ignore_direction' must be true or false"),
    ({"class_ids_no_orientation": [1.5]}, "list of integer class ids"),
])
def test_invalid_parameters_are_clear_errors(params, fragment):
    with pytest.raises(DLParamError) as info:
        AugmentParams.from_dict(params)
    assert fragment in str(info.value)


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(DLParamError, match="crop_percentage"):
        AugmentParams.from_dict({"crop": 50})


def test_bad_generator_image_range_and_samples_are_clear_errors():
    s = _samples(1)
    with pytest.raises(DLParamError, match="numpy random Generator"):
        augment_dl_samples(s, ALL_ON, 42)
    with pytest.raises(DLParamError, match="min < max"):
        augment_dl_samples(s, ALL_ON, np.random.default_rng(0), image_range=(1, 0))
    with pytest.raises(DLSampleError, match="sample 0 has no key 'image'"):
        augment_dl_samples([{"image_label_id": 1}], {"mirror": "r", "augmentation_percentage": 100},
                           np.random.default_rng(0))


def test_percentage_0_leaves_samples_unchanged_and_100_changes_all():
    samples = _samples(20)
    before = copy.deepcopy(samples)
    kept = augment_dl_samples(samples, dict(ALL_ON, augmentation_percentage=0), np.random.default_rng(1))
    assert all(_same(k, s) and k is not s for k, s in zip(kept, samples))
    changed = augment_dl_samples(samples, ALL_ON, np.random.default_rng(1))
    assert all(not np.array_equal(c["image"], s["image"]) for c, s in zip(changed, samples))
    assert all(_same(s, b) for s, b in zip(samples, before)), "inputs must not be modified"


def test_percentage_is_the_share_of_augmented_samples():
    samples = _samples(400, height=8, width=8)
    out = augment_dl_samples(samples, {"augmentation_percentage": 30, "mirror": "c"}, np.random.default_rng(3))
    share = np.mean([not np.array_equal(o["image"], s["image"]) for o, s in zip(out, samples)])
    assert 0.22 < share < 0.38  # binomial(400, 0.3): +-3.5 standard deviations


def test_one_method_per_sample_as_halcon():
    """A chosen sample gets exactly one of the enabled methods: with mirror and brightness on,
    an augmented image is either a pure mirror or the same geometry with shifted grey values."""
    samples = _samples(60)
    out = augment_dl_samples(samples, {"augmentation_percentage": 100, "mirror": "c", "brightness_variation": 20},
                             np.random.default_rng(5))
    kinds = []
    for o, s in zip(out, samples):
        if np.array_equal(o["image"], s["image"][:, ::-1]):
            kinds.append("mirror")
        else:
            shift = o["image"].astype(np.float64) - s["image"]
            inner = np.abs(s["image"]) < 100  # away from the clipping at the range ends
            assert np.ptp(shift[inner]) < 1e-4 and np.array_equal(o["segmentation_image"], s["segmentation_image"])
            kinds.append("brightness")
    assert 15 < kinds.count("mirror") < 45


def test_same_generator_state_gives_bit_identical_samples():
    samples = _samples(12)
    a = augment_dl_samples(samples, ALL_ON, np.random.default_rng(7))
    np.random.seed(123)  # the global numpy state plays no part
    b = augment_dl_samples(samples, ALL_ON, np.random.default_rng(7))
    assert all(_same(x, y) for x, y in zip(a, b))
    c = augment_dl_samples(samples, ALL_ON, np.random.default_rng(8))
    assert not all(_same(x, y) for x, y in zip(a, c))
    # resume: restoring the generator's state mid-stream continues the same stream
    rng = np.random.default_rng(9)
    augment_dl_samples(samples[:6], ALL_ON, rng)
    state = copy.deepcopy(rng.bit_generator.state)
    second = augment_dl_samples(samples[6:], ALL_ON, rng)
    resumed = np.random.default_rng(0)
    resumed.bit_generator.state = state
    assert all(_same(x, y) for x, y in zip(second, augment_dl_samples(samples[6:], ALL_ON, resumed)))


@pytest.mark.parametrize("image_range", [(-127.0, 128.0), (0.0, 1.0)])
def test_brightness_keeps_labels_and_stays_within_bounds(image_range):
    lo, hi = image_range
    samples = _samples(30, lo=lo, hi=hi)
    v = 40.0
    unit = (hi - lo) / 255.0  # one grey value in the samples' scale
    out = augment_dl_samples(samples, {"augmentation_percentage": 100, "brightness_variation": v},
                             np.random.default_rng(11), image_range=image_range)
    shifts = []
    for o, s in zip(out, samples):
        for key in s:
            if key != "image":
                np.testing.assert_array_equal(o[key], s[key])
        assert o["image"].dtype == np.float32 and lo <= o["image"].min() and o["image"].max() <= hi
        diff = o["image"].astype(np.float64) - s["image"]
        inner = (s["image"] > lo + (v + 1) * unit) & (s["image"] < hi - (v + 1) * unit)
        assert np.ptp(diff[inner]) < 1e-4 * (hi - lo)  # one value added to every pixel
        shifts.append(diff[inner].mean() / unit)
        clipped = ~inner
        np.testing.assert_allclose(o["image"][clipped], np.clip(s["image"][clipped] + diff[inner].mean(), lo, hi),
                                   atol=1e-4 * (hi - lo))
    assert max(np.abs(shifts)) <= v + 1e-3 and np.std(shifts) > v / 4


def test_brightness_spot_changes_a_fading_circular_region():
    flat = [{"image": np.zeros((40, 50, 3), np.float32), "image_label_id": 0} for _ in range(20)]
    out = augment_dl_samples(flat, {"augmentation_percentage": 100, "brightness_variation_spot": 50},
                             np.random.default_rng(2))
    for o in out:
        diff = o["image"][:, :, 0]
        assert np.array_equal(o["image"][:, :, 0], o["image"][:, :, 2])
        assert np.abs(diff).max() <= 50 + 1e-4 and o["image_label_id"] == 0
        if np.abs(diff).max() < 1:
            continue
        peak = np.unravel_index(np.abs(diff).argmax(), diff.shape)
        rows, cols = np.nonzero(np.abs(diff) > 1e-6)
        radius = np.hypot(rows - peak[0], cols - peak[1]).max()
        assert radius <= 0.5 * 40 + 1.5  # at most half the shorter side
        assert (np.abs(diff) < 1e-6).any()  # a spot, not the whole image
        assert np.all(np.sign(diff[rows, cols]) == np.sign(diff[peak]))


@pytest.mark.parametrize("params, low", [({}, -np.pi), ({"ignore_direction": True}, -np.pi / 2),
                                         ({"class_ids_no_orientation": [1]}, -np.pi / 2)])
def test_rectangle2_phi_stays_in_range(params, low):
    samples = _samples(40)
    out = augment_dl_samples(samples, dict(ALL_ON, **params), np.random.default_rng(4))
    phi = np.concatenate([o["bbox_phi"] for o in out])
    assert phi.size and np.all((phi > low) & (phi <= -low))
    if low == -np.pi:
        assert (np.abs(phi) > np.pi / 2).any()  # a direction kept, not folded into a half turn


def test_single_channel_images_and_empty_boxes():
    s = {"image": np.arange(30 * 20, dtype=np.float32).reshape(30, 20), "bbox_row1": np.zeros(0),
         "bbox_col1": np.zeros(0), "bbox_row2": np.zeros(0), "bbox_col2": np.zeros(0), "bbox_label_id": np.zeros(0)}
    for seed in range(10):
        o = augment_dl_samples([s], ALL_ON, np.random.default_rng(seed))[0]
        assert o["image"].shape == (30, 20) and o["bbox_row1"].shape == (0,) and o["bbox_label_id"].shape == (0,)


def test_integer_images_are_rounded_and_saturated_not_wrapped():
    image = np.zeros((16, 16), np.uint8)
    image[:, 8:] = 255
    s = [{"image": image, "image_label_id": 0}] * 20
    for params in ({"brightness_variation": 60}, {"rotate_range": 30}, {"crop_percentage": 60}):
        for o in augment_dl_samples(s, dict(params, augmentation_percentage=100), np.random.default_rng(0),
                                    image_range=(0, 255)):
            assert o["image"].dtype == np.uint8
            if "brightness_variation" in params:  # the dark half only brightens, the bright half only darkens
                dark, bright = int(o["image"][0, 0]), int(o["image"][0, 15])
                assert (dark == 0 or bright == 255) and dark + (255 - bright) <= 60

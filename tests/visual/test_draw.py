"""The shared drawing helpers: image conversion, pixel ranges of pixel-edge boxes, class
blending and the class palette."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dlbatch.core.errors import DLParamError
from dlbatch.visual import blend_classes, class_colour_rgb, draw_box_outline, text_colour_on, to_rgb_uint8
from dlbatch.visual.draw import class_edges, draw_label, font_for, oriented_box_band, paint_mask, pixel_range


def test_to_rgb_uint8_accepts_grey_single_channel_rgb_and_more_channels():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    for image in (grey, grey[:, :, None]):
        out = to_rgb_uint8(image)
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8
        assert all(np.array_equal(out[:, :, c], grey) for c in range(3))
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    assert np.array_equal(to_rgb_uint8(rgba), rgba[:, :, :3])
    out = to_rgb_uint8(rgba[:, :, :3])
    out[0, 0] = 1  # a copy: the caller's image is never drawn on
    assert not np.shares_memory(out, rgba)


def test_to_rgb_uint8_clips_and_rounds_other_types_and_rejects_bad_shapes():
    out = to_rgb_uint8(np.array([[-3.0, 12.6, 300.0]]))
    assert out[0, :, 0].tolist() == [0, 13, 255]
    for bad in (np.zeros(4), np.zeros((2, 2, 3, 1)), np.zeros((0, 3))):
        with pytest.raises(DLParamError, match="H x W"):
            to_rgb_uint8(bad)


@pytest.mark.parametrize("low,high,n,expected", [
    (9.5, 20.5, 100, (10, 20)),        # the exact box of pixels 10..20
    (9.7, 20.2, 100, (10, 20)),        # pixel centres 10..20 lie inside
    (-0.5, 99.5, 100, (0, 99)),        # the whole image
    (-7.0, 3.2, 100, (0, 3)),          # clipped to the image
    (4.6, 4.9, 100, (5, 5)),           # thinner than a pixel: the pixel nearest its middle
])
def test_pixel_range_of_pixel_edge_coordinates(low, high, n, expected):
    assert pixel_range(low, high, n) == expected


def test_box_outline_lies_on_the_box_border_pixels():
    image = Image.new("RGB", (40, 30), (0, 0, 0))
    draw_box_outline(ImageDraw.Draw(image), (4.5, 9.5, 20.5, 30.5), (255, 0, 0), 1, (30, 40))
    red = np.asarray(image)[:, :, 0] == 255
    expected = np.zeros((30, 40), dtype=bool)
    expected[5, 10:31] = expected[20, 10:31] = expected[5:21, 10] = expected[5:21, 30] = True
    assert np.array_equal(red, expected)


@pytest.mark.parametrize("width", [1, 3])
def test_an_unrotated_rectangle2_outline_is_the_rectangle1_outline_of_the_same_box(width):
    # rows 5..20, cols 10..30: rectangle1 (4.5, 9.5, 20.5, 30.5) = rectangle2 centre (12.5, 20),
    # phi 0 (length1 along the columns) and half lengths 10.5 (columns) and 8 (rows)
    first = Image.new("RGB", (40, 30), (0, 0, 0))
    draw_box_outline(ImageDraw.Draw(first), (4.5, 9.5, 20.5, 30.5), (255, 0, 0), width, (30, 40))
    second = Image.new("RGB", (40, 30), (0, 0, 0))
    paint_mask(second, *oriented_box_band((12.5, 20.0, 0.0, 10.5, 8.0), width, (30, 40)), (255, 0, 0))
    assert np.array_equal(np.asarray(first), np.asarray(second))
    # a quarter turn swaps the roles of the half lengths
    third = Image.new("RGB", (40, 30), (0, 0, 0))
    paint_mask(third, *oriented_box_band((12.5, 20.0, np.pi / 2, 8.0, 10.5), width, (30, 40)), (255, 0, 0))
    assert np.array_equal(np.asarray(first), np.asarray(third))


def test_oriented_band_outside_the_image_is_empty_and_a_thin_box_marks_one_pixel():
    mask, _, _ = oriented_box_band((-50.0, -50.0, 0.3, 5.0, 2.0), 2, (30, 40))
    assert not mask.any()
    mask, r0, c0 = oriented_box_band((7.0, 9.3, 0.0, 0.2, 0.2), 2, (30, 40))
    assert mask.sum() == 1 and tuple(np.argwhere(mask)[0] + (r0, c0)) == (7, 9)


def test_class_edges_marks_both_sides_of_a_class_change_only():
    m = np.zeros((4, 6), dtype=int)
    m[:, 3:] = 1
    edges = class_edges(m)
    assert edges[:, 2:4].all() and not edges[:, [0, 1, 4, 5]].any()


def test_blend_classes_blends_coloured_classes_and_keeps_the_rest():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    m = np.zeros((10, 12), dtype=int)
    m[2:8, 3:9] = 4
    out = blend_classes(rgb, m, {4: (10, 200, 30)}, 0.25, edges=False)
    want = np.round(0.75 * rgb[2:8, 3:9].astype(float) + 0.25 * np.array([10, 200, 30])).astype(np.uint8)
    assert np.array_equal(out[2:8, 3:9], want)
    outside = m != 4
    assert np.array_equal(out[outside], rgb[outside])
    with_edges = blend_classes(rgb, m, {4: (10, 200, 30)}, 0.25)
    assert with_edges[2, 5].tolist() == [10, 200, 30] and with_edges[7, 8].tolist() == [10, 200, 30]
    assert np.array_equal(with_edges[3:7, 4:8], want[1:5, 1:5])
    with pytest.raises(DLParamError, match="class map of shape"):
        blend_classes(rgb, m[:5], {4: (1, 2, 3)}, 0.5)


def test_palette_gives_distinct_colours_and_readable_text():
    colours = [class_colour_rgb(i) for i in range(12)]
    assert len(set(colours)) == 12
    for a in range(12):
        for b in range(a + 1, 12):  # no two of the first classes are near-identical
            assert np.abs(np.subtract(colours[a], colours[b])).max() > 20
    assert text_colour_on((250, 250, 250)) == (0, 0, 0) and text_colour_on((5, 5, 60)) == (255, 255, 255)


def test_label_stays_inside_the_image_and_uses_the_fill_colour():
    image = Image.new("RGB", (50, 40), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    r0, c0, r1, c1 = draw_label(draw, "ab", 2, 45, (255, 0, 0), font_for(40, 50), (40, 50))
    assert r0 == 2 and 0 < c0 < 45 and c1 == 49  # no room above row 2: below it; moved left to fit
    arr = np.asarray(image)
    assert arr[r0, c0].tolist() == [255, 0, 0] and arr[r1, c1].tolist() == [255, 0, 0]
    assert (arr[r1 + 1:] == 0).all() and (arr[:, :c0] == 0).all()
    r0, c0, r1, c1 = draw_label(draw, "a label wider than the image", 30, 20, (0, 255, 0), font_for(40, 50), (40, 50))
    assert r1 == 29 and c0 == 0 and c1 == 49  # above row 30, from column 0, cut at the border

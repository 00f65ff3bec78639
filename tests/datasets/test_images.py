"""Pillow modes to uint8 H x W x C: grey stays one channel, alpha is dropped, palettes are
looked up, 16-bit images are refused; every error names the file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlbatch import DLSampleError
from dlbatch.datasets.images import read_image, read_label_image

from .helpers import pixels


def test_grey_rgb_and_rgba(tmp_path):
    grey, rgba = pixels(5, 6, channels=1, seed=1), pixels(5, 6, channels=4, seed=2)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), grey[:, :, None])
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[:, :, :3])
    assert read_image(tmp_path / "a.png").dtype == np.uint8


def test_colour_palette_is_looked_up(tmp_path):
    index = np.random.default_rng(0).integers(0, 4, (4, 7)).astype(np.uint8)
    colours = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200], [90, 90, 30]], np.uint8)
    image = Image.fromarray(index).convert("P")
    image.putpalette(colours.ravel().tolist())
    image.putdata(index.ravel().tolist())
    image.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), colours[index])


def test_sixteen_bit_images_are_refused_but_are_fine_as_labels(tmp_path):
    values = np.random.default_rng(1).integers(0, 2000, (3, 4)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with pytest.raises(DLSampleError, match=r"deep\.png.*8 bits"):
        read_image(tmp_path / "deep.png")
    label = read_label_image(tmp_path / "deep.png")
    assert label.dtype == np.int32
    np.testing.assert_array_equal(label, values)


def test_missing_and_broken_files_are_named(tmp_path):
    with pytest.raises(DLSampleError, match=r"nothere\.png: image file not found"):
        read_image(tmp_path / "nothere.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DLSampleError, match=r"broken\.jpg: cannot read the image"):
        read_image(tmp_path / "broken.jpg")
    with pytest.raises(DLSampleError, match=r"nolabel\.png: label image file not found"):
        read_label_image(tmp_path / "nolabel.png")

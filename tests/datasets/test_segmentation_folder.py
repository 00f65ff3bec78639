"""images/ + labels/ folders: label values are class ids (from classes.json or the union of the
label images), and the errors for labels that do not fit name the label file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlbatch import DLError, DLSampleError
from dlbatch.datasets import read_dl_dataset

from .helpers import dump, pixels, save


def label(height, width, values, seed=0):
    return np.random.default_rng(seed).choice(values, (height, width))


def make(root, labels, images=None):
    images = images or {stem: pixels(*lab.shape, seed=k) for k, (stem, lab) in enumerate(labels.items())}
    for stem, image in images.items():
        save(root / "images" / f"{stem}.png", image)
    for stem, lab in labels.items():
        mode_array = lab.astype(np.uint16 if lab.max() > 255 else np.uint8)
        save(root / "labels" / f"{stem}.png", mode_array)
    return images


def test_label_values_are_class_ids_and_the_union_is_the_default(tmp_path):
    labels = {"a": label(12, 10, [0, 2, 5], seed=1), "b": label(7, 9, [0, 300], seed=2)}
    images = make(tmp_path, labels)
    ds = read_dl_dataset(tmp_path)
    assert ds.model_type == "segmentation" and ds.class_ids == [0, 2, 5, 300]
    for i, stem in enumerate(("a", "b")):
        sample = ds[i]
        assert sample["image_file_name"] == f"{stem}.png"
        np.testing.assert_array_equal(sample["image"], images[stem])
        assert sample["segmentation_image"].dtype == np.int32
        np.testing.assert_array_equal(sample["segmentation_image"], labels[stem])


def test_classes_json_gives_ids_and_names_and_unknown_values_name_the_label_file(tmp_path):
    make(tmp_path, {"a": label(6, 6, [0, 1], seed=1), "b": label(6, 6, [0, 1, 4], seed=2)})
    dump(tmp_path / "classes.json", {"class_ids": [0, 1, 2], "class_names": ["bg", "fg", "edge"]})
    ds = read_dl_dataset(tmp_path, format="segmentation")
    assert ds.class_ids == [0, 1, 2] and ds.class_names == ["bg", "fg", "edge"]
    ds[0]
    with pytest.raises(DLSampleError, match=r"labels/b\.png.*\[4\]"):
        ds[1]


def test_palette_label_png_gives_its_indices(tmp_path):
    save(tmp_path / "images" / "a.png", pixels(5, 5))
    values = label(5, 5, [0, 1, 3], seed=3).astype(np.uint8)
    image = Image.fromarray(values).convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [9] * (3 * 252))
    image.putdata(values.ravel().tolist())
    (tmp_path / "labels").mkdir()
    image.save(tmp_path / "labels" / "a.png")
    np.testing.assert_array_equal(read_dl_dataset(tmp_path)[0]["segmentation_image"], values)


def test_label_of_another_size_names_the_label_file(tmp_path):
    make(tmp_path, {"a": label(6, 7, [0, 1])}, images={"a": pixels(6, 8)})
    with pytest.raises(DLSampleError, match=r"labels/a\.png.*6 x 7.*6 x 8"):
        read_dl_dataset(tmp_path)[0]


def test_colour_label_png_and_missing_label_are_clear_errors(tmp_path):
    make(tmp_path, {"a": label(4, 4, [0, 1])})
    dump(tmp_path / "classes.json", {"class_ids": [0, 1]})
    save(tmp_path / "labels" / "a.png", pixels(4, 4))
    with pytest.raises(DLSampleError, match=r"labels/a\.png.*one channel"):
        read_dl_dataset(tmp_path)[0]
    save(tmp_path / "images" / "b.png", pixels(4, 4))
    with pytest.raises(DLSampleError, match=r"images/b\.png.*labels/b\.png"):
        read_dl_dataset(tmp_path)


def test_two_images_with_one_stem_are_an_error(tmp_path):
    make(tmp_path, {"a": label(4, 4, [0, 1])})
    save(tmp_path / "images" / "a.bmp", pixels(4, 4))
    with pytest.raises(DLError, match="same stem"):
        read_dl_dataset(tmp_path)

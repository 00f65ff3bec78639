"""Classification folders: one sub-folder per class, ids by sorted name, images sorted by name."""
from __future__ import annotations

import numpy as np
import pytest

from dlbatch import DLError
from dlbatch.datasets import read_dl_dataset

from .helpers import pixels, save


def test_class_folders_give_sorted_names_ids_and_lossless_images(tmp_path):
    images = {"dog/b.PNG": pixels(9, 7, seed=1), "dog/a.tif": pixels(5, 6, seed=2),
              "cat/x.bmp": pixels(4, 4, seed=3), "cat/y.gif": pixels(6, 5, channels=1, seed=4)}
    for name, array in images.items():
        save(tmp_path / name, array)
    (tmp_path / "ant").mkdir()  # an empty class still takes its place in the sorted names
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    save(tmp_path / "dog" / ".hidden.png", pixels(3, 3))
    save(tmp_path / ".cache" / "z.png", pixels(3, 3))
    (tmp_path / "readme.md").write_text("top-level files are not classes")

    ds = read_dl_dataset(tmp_path)
    assert (ds.model_type, ds.instance_type) == ("classification", None)
    assert ds.class_names == ["ant", "cat", "dog"] and ds.class_ids == [0, 1, 2]
    expected = [("cat/x.bmp", 1), ("cat/y.gif", 1), ("dog/a.tif", 2), ("dog/b.PNG", 2)]
    assert [(ds[i]["image_file_name"], ds[i]["image_label_id"]) for i in range(len(ds))] == expected
    for i, (name, _) in enumerate(expected):
        sample = ds[i]
        want = images[name] if images[name].ndim == 3 else images[name][:, :, None]
        assert sample["image"].dtype == np.uint8
        np.testing.assert_array_equal(sample["image"], want)
        assert sample["image_id"] == i
    assert read_dl_dataset(tmp_path, format="classification").class_names == ds.class_names


def test_jpeg_images_are_read_as_colour(tmp_path):
    save(tmp_path / "a" / "one.JPEG", pixels(8, 10, seed=5))
    sample = read_dl_dataset(tmp_path)[0]
    assert sample["image"].shape == (8, 10, 3) and sample["image"].dtype == np.uint8


def test_a_folder_without_class_folders_or_images_is_a_clear_error(tmp_path):
    save(tmp_path / "loose.png", pixels(4, 4))
    with pytest.raises(DLError, match="no class sub-folders"):
        read_dl_dataset(tmp_path, format="classification")
    (tmp_path / "a").mkdir()
    with pytest.raises(DLError, match="hold no images"):
        read_dl_dataset(tmp_path)

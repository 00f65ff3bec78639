"""read_dl_dataset's format detection and its errors for paths that are no dataset."""
from __future__ import annotations

import pytest

from dlbatch import DLError, DLParamError
from dlbatch.datasets import FORMATS, read_dl_dataset

from .helpers import dump, pixels, save


def test_unknown_paths_formats_and_json_are_clear_errors(tmp_path):
    with pytest.raises(DLError, match="no such file or folder"):
        read_dl_dataset(tmp_path / "missing")
    with pytest.raises(DLParamError, match="formats: " + ", ".join(FORMATS)):
        read_dl_dataset(tmp_path, format="voc")
    odd = dump(tmp_path / "odd.json", {"hello": 1})
    with pytest.raises(DLError, match="cannot tell the dataset format"):
        read_dl_dataset(odd)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DLError, match=r"bad\.json: not a valid JSON"):
        read_dl_dataset(tmp_path / "bad.json")


def test_format_must_fit_the_path(tmp_path):
    save(tmp_path / "c" / "a.png", pixels(4, 4))
    with pytest.raises(DLError, match="is a JSON file, not a folder"):
        read_dl_dataset(tmp_path, format="coco")
    path = dump(tmp_path / "x.json", {"images": [], "categories": [{"id": 1}]})
    with pytest.raises(DLError, match="is a folder, not a file"):
        read_dl_dataset(path, format="segmentation")
    with pytest.raises(DLParamError, match="image_dir applies to JSON datasets"):
        read_dl_dataset(tmp_path, image_dir=tmp_path)
    assert len(read_dl_dataset(path)) == 0  # a COCO file without images is an empty dataset


def test_folder_with_images_and_labels_is_segmentation_otherwise_classification(tmp_path):
    save(tmp_path / "images" / "a.png", pixels(4, 4))
    save(tmp_path / "labels" / "a.png", pixels(4, 4, channels=1))
    assert read_dl_dataset(tmp_path).model_type == "segmentation"
    assert read_dl_dataset(tmp_path, format="classification").class_names == ["images", "labels"]

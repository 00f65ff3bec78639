"""COCO detection files: the box convention against drawn pixels, the rbox extension for
rectangle2, images without annotations, and the errors that must name the file."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlbatch import DLSampleError
from dlbatch.datasets import read_dl_dataset

from .helpers import coco_file, dump, pixels, save

CATEGORIES = [{"id": 7, "name": "bolt"}, {"id": 3, "name": "nut"}]


def test_coco_box_of_drawn_pixels_is_the_spec_box_of_those_pixel_centres(tmp_path):
    image = np.zeros((20, 30, 3), np.uint8)
    image[4:10, 6:15] = 255  # pixel rows 4..9, cols 6..14: COCO's tight box is [6, 4, 9, 6]
    save(tmp_path / "img" / "a.png", image)
    save(tmp_path / "img" / "empty.png", pixels(16, 16))
    path = dump(tmp_path / "ann.json", {
        "images": [{"id": 11, "file_name": "img/a.png", "width": 30, "height": 20},
                   {"id": 12, "file_name": "img/empty.png", "width": 16, "height": 16}],
        "annotations": [{"id": 1, "image_id": 11, "category_id": 7, "bbox": [6, 4, 9, 6]},
                        {"id": 2, "image_id": 11, "category_id": 3, "bbox": [0, 0, 30, 20]},
                        {"id": 3, "image_id": 11, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 1}],
        "categories": CATEGORIES})

    ds = read_dl_dataset(path)
    assert (ds.model_type, ds.instance_type) == ("detection", "rectangle1")
    assert ds.class_ids == [3, 7] and ds.class_names == ["nut", "bolt"]
    sample = ds[0]
    np.testing.assert_array_equal(sample["image"], image)
    assert (sample["image_id"], sample["image_file_name"]) == (11, "img/a.png")
    # SPEC: pixel centres r0..r1 give row1 = r0 - 0.5, row2 = r1 + 0.5; the whole image spans -0.5..H-0.5
    rows, cols = np.flatnonzero(image[..., 0].any(1)), np.flatnonzero(image[..., 0].any(0))
    want = {"bbox_row1": [rows[0] - 0.5, -0.5], "bbox_col1": [cols[0] - 0.5, -0.5],
            "bbox_row2": [rows[-1] + 0.5, 19.5], "bbox_col2": [cols[-1] + 0.5, 29.5]}
    for key, values in want.items():
        assert sample[key].dtype == np.float64
        np.testing.assert_array_equal(sample[key], values, err_msg=key)
    assert sample["bbox_label_id"].dtype == np.int64 and sample["bbox_label_id"].tolist() == [7, 3]
    empty = ds[1]
    assert all(empty[k].shape == (0,) for k in want) and empty["bbox_label_id"].dtype == np.int64


def rbox(row, col, phi, l1, l2):
    return {"row": row, "col": col, "phi": phi, "length1": l1, "length2": l2}


def test_rbox_extension_makes_a_rectangle2_dataset(tmp_path):
    boxes = [(10.0, 12.5, 0.3, 6.0, 2.5), (20.25, 8.0, -math.pi / 2 + 0.1, 4.0, 1.5)]
    anns = [{"id": k + 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "rbox": rbox(*b)}
            for k, b in enumerate(boxes)]
    path = coco_file(tmp_path, [(1, "a.png", 32, 32), (2, "b.png", 32, 32)], anns, CATEGORIES)
    ds = read_dl_dataset(path)
    assert ds.instance_type == "rectangle2"
    sample = ds[0]
    for j, key in enumerate(("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")):
        np.testing.assert_array_equal(sample[key], [b[j] for b in boxes], err_msg=key)
        assert ds[1][key].shape == (0,)
    assert sample["bbox_label_id"].tolist() == [7, 7]


def test_image_dir_replaces_the_json_folder(tmp_path):
    path = coco_file(tmp_path / "pictures", [(1, "a.png", 8, 8)], [], CATEGORIES)
    moved = dump(tmp_path / "elsewhere" / "ann.json", __import__("json").loads(path.read_text()))
    with pytest.raises(DLSampleError, match="a.png"):
        read_dl_dataset(moved)
    assert read_dl_dataset(moved, image_dir=tmp_path / "pictures")[0]["image"].shape == (8, 8, 3)


def expect_error(path, *fragments, index=None, **kwargs):
    """The DLSampleError (at reading, or at ds[index]) names every fragment."""
    with pytest.raises(DLSampleError) as info:
        ds = read_dl_dataset(path, **kwargs)
        if index is not None:
            ds[index]
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return str(info.value)


def test_unknown_category_names_the_file_and_the_annotation(tmp_path):
    path = coco_file(tmp_path, [(1, "a.png", 16, 16)],
                     [{"id": 42, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]}], CATEGORIES)
    expect_error(path, str(path), "annotation 42", "category_id 5")


def test_box_outside_the_image_is_an_error_beyond_the_tolerance(tmp_path):
    ann = {"id": 9, "image_id": 1, "category_id": 3, "bbox": [10, 2, 6.5, 4]}  # right edge 16.5 of 16
    path = coco_file(tmp_path, [(1, "a.png", 16, 16)], [ann], CATEGORIES)
    assert read_dl_dataset(path)[0]["bbox_col2"].tolist() == [16.0]  # within the default 1 pixel
    message = expect_error(path, str(path), "annotation 9", "outside", border_tolerance=0.25)
    assert "a.png" in message


def test_rotated_box_outside_the_image_is_an_error(tmp_path):
    ann = {"id": 4, "image_id": 1, "category_id": 3, "rbox": rbox(8, 8, math.pi / 4, 14, 2)}  # reaches 11.3 from the centre
    path = coco_file(tmp_path, [(1, "a.png", 16, 16)], [ann], CATEGORIES)
    expect_error(path, str(path), "annotation 4", "outside")


def test_box_outside_an_image_of_unknown_size_fails_when_read_naming_the_image(tmp_path):
    save(tmp_path / "a.png", pixels(16, 16))
    path = dump(tmp_path / "ann.json", {"images": [{"id": 1, "file_name": "a.png"}], "categories": CATEGORIES,
                                        "annotations": [{"id": 1, "image_id": 1, "category_id": 3,
                                                         "bbox": [12, 0, 8, 4]}]})
    expect_error(path, str(tmp_path / "a.png"), "outside", index=0)


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    path = coco_file(tmp_path, [(1, "a.png", 8, 8), (2, "b.png", 8, 8)], [], CATEGORIES)
    (tmp_path / "b.png").write_bytes(b"this is no png")
    read_dl_dataset(path)[0]
    expect_error(path, str(tmp_path / "b.png"), "cannot read", index=1)
    (tmp_path / "a.png").unlink()
    expect_error(path, str(tmp_path / "a.png"), "not found")
    expect_error(path, str(tmp_path / "a.png"), "not found", index=0, check_files=False)


def test_declared_size_must_match_the_image(tmp_path):
    path = coco_file(tmp_path, [(1, "a.png", 8, 8)], [], CATEGORIES)
    save(tmp_path / "a.png", pixels(8, 9))
    expect_error(path, str(tmp_path / "a.png"), "8 x 9", index=0)


@pytest.mark.parametrize("ann, fragment", [
    ({"id": 5, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]}, "image_id 99"),
    ({"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2]}, "'bbox'"),
    ({"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 2]}, "empty"),
    ({"id": 5, "image_id": 1, "category_id": 3}, "'bbox'"),
    ({"id": 5, "image_id": 1, "category_id": 3, "rbox": {"row": 1}}, "'rbox'"),
])
def test_malformed_annotations_name_the_file_and_annotation(tmp_path, ann, fragment):
    path = coco_file(tmp_path, [(1, "a.png", 16, 16)], [ann], CATEGORIES)
    expect_error(path, str(path), "annotation 5", fragment)


def test_rbox_on_some_annotations_only_is_an_error(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "rbox": rbox(8, 8, 0, 3, 2)},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]}]
    path = coco_file(tmp_path, [(1, "a.png", 16, 16)], anns, CATEGORIES)
    expect_error(path, str(path), "annotation 2", "rbox")

"""A folder holding one COCO or HALCON JSON file (what `dlbatch data synth detection DIR`
writes) reads as that file, so the folder can be passed to read_dl_dataset and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset


@pytest.mark.parametrize("instance_type, fmt", [("rectangle1", None), ("rectangle2", None), ("rectangle1", "halcon")])
def test_the_folder_reads_like_its_json_file(tmp_path, instance_type, fmt):
    written = write_synthetic_dataset("detection", tmp_path / "d", num_samples=4, width=32, height=32,
                                      instance_type=instance_type, **({"format": fmt} if fmt else {}))
    from_file, from_folder = read_dl_dataset(written), read_dl_dataset(tmp_path / "d")
    assert from_folder.model_type == "detection" and from_folder.instance_type == from_file.instance_type
    assert len(from_folder) == len(from_file) == 4
    for a, b in zip(from_file, from_folder):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


def test_a_class_folder_with_a_json_file_beside_stays_a_class_folder(tmp_path):
    written = write_synthetic_dataset("classification", tmp_path / "c", num_samples=6, width=16, height=16)
    (tmp_path / "c" / "notes.json").write_text(json.dumps({"images": [], "categories": []}))
    assert read_dl_dataset(written).model_type == "classification"
    assert read_dl_dataset(tmp_path / "c").model_type == "classification"

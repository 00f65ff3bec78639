"""The confusion-matrix PNG of classification evaluations, with matplotlib and with Pillow."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlbatch.core.errors import DLParamError
from dlbatch.core.plugins import manager
from dlbatch.visual import write_confusion_matrix_png
from dlbatch.visual.confusion_plot import row_shares

CONFUSION = [[8, 2, 0], [1, 6, 3], [0, 0, 10]]
NAMES = ["cat", "dog", "a bird with a long name"]


def darkness(path) -> np.ndarray:
    return 255 - np.asarray(Image.open(path).convert("L"), dtype=np.int64)


@pytest.mark.parametrize("renderer", ["matplotlib", "pillow"])
def test_confusion_png_opens_and_has_a_plausible_size(tmp_path, renderer):
    if renderer == "matplotlib":
        pytest.importorskip("matplotlib")
    path = write_confusion_matrix_png(CONFUSION, NAMES, tmp_path / "sub" / "cm.png", renderer=renderer)
    assert path == tmp_path / "sub" / "cm.png"
    with Image.open(path) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert 150 <= width <= 3000 and 150 <= height <= 3000
    assert (darkness(path) > 100).mean() > 0.01  # cells and text, not a blank picture


def test_pillow_rendering_grows_with_the_number_of_classes(tmp_path):
    small = write_confusion_matrix_png(np.eye(2, dtype=int), ["a", "b"], tmp_path / "2.png", renderer="pillow")
    large = write_confusion_matrix_png(np.eye(12, dtype=int), [f"c{i}" for i in range(12)], tmp_path / "12.png",
                                       renderer="pillow")
    assert Image.open(large).size[0] > Image.open(small).size[0] + 200


def test_row_shares_are_the_recall_of_each_truth_class():
    shares = row_shares(np.array([[3, 1], [0, 0]]))
    assert shares.tolist() == [[0.75, 0.25], [0.0, 0.0]]


def test_bad_matrices_and_names_are_clear_errors(tmp_path):
    with pytest.raises(DLParamError, match="K x K"):
        write_confusion_matrix_png([[1, 2, 3]], ["a"], tmp_path / "x.png")
    with pytest.raises(DLParamError, match="2 class names for a 3 x 3"):
        write_confusion_matrix_png(CONFUSION, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(DLParamError, match="renderer"):
        write_confusion_matrix_png(CONFUSION, NAMES, tmp_path / "x.png", renderer="svg")


def test_classification_evaluation_plots_write_the_confusion_matrix_with_class_names(tmp_path):
    hp = {"class_ids": [4, 7, 9], "class_names": NAMES}
    summary = {"confusion_matrix": CONFUSION, "class_ids": [4, 7, 9], "top1_error": 0.24}
    paths = manager.model_type("classification").evaluation_plots(summary, hp, tmp_path / "plots")
    assert [p.name for p in paths] == ["confusion_matrix.png"] and paths[0].parent == tmp_path / "plots"
    assert Image.open(paths[0]).size[0] >= 150
    assert manager.model_type("classification").evaluation_plots({"top1_error": 0.1}, hp, tmp_path) == []
    assert manager.model_type("detection").evaluation_plots({"mean_ap": 0.5}, hp, tmp_path) == []


def test_evaluation_plots_name_the_rows_in_the_summary_class_order(tmp_path, monkeypatch):
    import dlbatch.models.classification as classification
    seen = {}

    def capture(confusion, class_names, path, **kw):
        seen.update(confusion=confusion, names=list(class_names))
        return path

    monkeypatch.setattr(classification, "write_confusion_matrix_png", capture)
    hp = {"class_ids": [4, 7, 9], "class_names": ["four", "seven", "nine"]}
    summary = {"confusion_matrix": CONFUSION, "class_ids": [9, 4, 7]}
    manager.model_type("classification").evaluation_plots(summary, hp, tmp_path)
    assert seen == {"confusion": CONFUSION, "names": ["nine", "four", "seven"]}

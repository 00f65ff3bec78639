"""The first-hour tour (`python -m dlbatch.tour`) in its short mode: every model type trains a
few steps, is measured and drawn; the PNGs open with Pillow and show the images with something
drawn on them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dlbatch import tour

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ["classification", "segmentation", "detection_rectangle1", "detection_rectangle2"]


def test_quick_tour_from_the_command_line_writes_pngs_and_a_summary(tmp_path):
    env = {**os.environ, tour.QUICK_ENV: "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "dlbatch.tour", "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary) == sorted(LESSONS)
    for name, entry in summary.items():
        assert entry["steps"] == 3
        metric = {"classification": "accuracy", "segmentation": "mean_iou"}.get(name, "ap_50")
        assert 0.0 <= entry["measures"][metric] <= 1.0
        assert f"{metric} " in proc.stdout
        strip = Image.open(entry["overlays"][0])
        strip.load()
        singles = [Image.open(p) for p in entry["overlays"][1:]]
        assert len(singles) == tour.OVERLAYS_PER_LESSON
        assert strip.mode == "RGB" and all(s.mode == "RGB" for s in singles)
        # the strip is the single pictures side by side with 4-pixel gaps
        assert strip.height == singles[0].height
        assert strip.width == sum(s.width for s in singles) + 4 * (len(singles) - 1)
        assert singles[0].width >= 120  # enlarged so that labels are legible


def test_overlays_are_the_model_types_drawing_of_the_enlarged_image(tmp_path):
    lesson = tour.lessons()[0]
    model, held_out, _ = tour.train_lesson(lesson, steps=1, num_train=16, num_held_out=2)
    paths = tour.write_overlays(model, held_out[:1], tmp_path, "c", scale=3)
    picture = np.asarray(Image.open(paths[1]))
    raw = held_out[0]["image"]
    assert picture.shape == (raw.shape[0] * 3, raw.shape[1] * 3, 3)
    enlarged = np.repeat(np.repeat(raw, 3, axis=0), 3, axis=1)
    differs = np.any(picture != enlarged, axis=2)
    assert 0 < differs.mean() < 0.5  # a label drawn over the image, the image still there


def test_quick_mode_is_asked_for_by_flag_or_environment(monkeypatch):
    monkeypatch.delenv(tour.QUICK_ENV, raising=False)
    assert not tour.quick_requested(False)
    assert tour.quick_requested(True)
    monkeypatch.setenv(tour.QUICK_ENV, "1")
    assert tour.quick_requested(False)
    monkeypatch.setenv(tour.QUICK_ENV, "0")
    assert not tour.quick_requested(False)

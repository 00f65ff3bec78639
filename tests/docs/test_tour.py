"""The first-hour tour (`python -m dlbatch.tour`) in its short mode: every model type trains a
few steps, is measured and drawn; the PNGs open with Pillow and show the images with something
drawn on them, and the printed numbers are the summary's."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dlbatch import tour

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ["classification", "segmentation", "detection_rectangle1", "detection_rectangle2"]
METRIC = {"classification": "accuracy", "segmentation": "mean_iou",
          "detection_rectangle1": "ap_50", "detection_rectangle2": "ap_50"}


def test_quick_tour_from_the_command_line_writes_pngs_and_a_summary(tmp_path):
    env = {**os.environ, tour.QUICK_ENV: "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "dlbatch.tour", "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary) == sorted(LESSONS)
    # the closing table: one line per model type, its measure, what it learned and a guess's score
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(\w+)\s+(\w+)\s+(\d+\.\d{3})\s+(\d+\.\d{3})\s+(\d+\.\d)$", proc.stdout, re.MULTILINE)}
    assert sorted(rows) == sorted(LESSONS)
    for name, entry in summary.items():
        assert entry["steps"] == tour.QUICK_STEPS
        metric = METRIC[name]
        assert entry["metric"] == metric and 0.0 <= entry["measures"][metric] <= 1.0
        assert rows[name][0] == metric
        assert float(rows[name][1]) == round(entry["measures"][metric], 3)
        assert math.isclose(float(rows[name][2]), entry["guess"], abs_tol=6e-4)
        assert f"{metric} {entry['measures'][metric]:.3f}" in proc.stdout
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


def test_the_guess_scores_are_those_of_a_model_that_learned_nothing():
    by_name = {lesson.name: lesson for lesson in tour.lessons()}
    held_out = by_name["classification"].data(40, 2)
    labels = np.array([s["image_label_id"] for s in held_out])
    assert tour.guess_score(by_name["classification"], held_out) == np.bincount(labels).max() / len(labels)
    # all background: IoU(background) = background pixels / all pixels, IoU(disc) = 0
    held_out = by_name["segmentation"].data(10, 2)
    truth = np.stack([s["segmentation_image"] for s in held_out])
    assert math.isclose(tour.guess_score(by_name["segmentation"], held_out), np.mean(truth == 0) / 2)
    assert tour.guess_score(by_name["detection_rectangle1"], by_name["detection_rectangle1"].data(3, 2)) == 0.0


def test_learning_rate_warms_up_then_decays_along_a_cosine_to_its_floor():
    steps, start = 200, 0.5
    rates = [tour.learning_rate_at(s, steps, start) for s in range(steps)]
    assert rates[0] == start / 10 and rates[9] == start        # 10 warm-up steps
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))  # then never rises
    assert math.isclose(rates[(9 + steps - 1) // 2 + 1], start / 2, rel_tol=0.02)  # half way: half
    assert rates[-1] == start * tour.MIN_LEARNING_RATE_FRACTION
    assert tour.learning_rate_at(0, 1, start) == start        # one step: no warm-up to speak of


def test_pictures_show_each_class_and_scenes_with_objects_first():
    by_name = {lesson.name: lesson for lesson in tour.lessons()}
    held_out = by_name["classification"].data(30, 2)
    shown = tour.pictured(held_out, 3)
    assert sorted(s["image_label_id"] for s in shown) == [0, 1, 2]
    held_out = by_name["detection_rectangle1"].data(30, 2)
    assert all(len(s["bbox_label_id"]) > 0 for s in tour.pictured(held_out))
    assert len(tour.pictured(held_out[:2])) == 2


def test_quick_mode_is_asked_for_by_flag_or_environment(monkeypatch):
    monkeypatch.delenv(tour.QUICK_ENV, raising=False)
    assert not tour.quick_requested(False)
    assert tour.quick_requested(True)
    monkeypatch.setenv(tour.QUICK_ENV, "1")
    assert tour.quick_requested(False)
    monkeypatch.setenv(tour.QUICK_ENV, "0")
    assert not tour.quick_requested(False)

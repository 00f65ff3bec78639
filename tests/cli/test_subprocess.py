"""The installed `dlbatch` command as a real process, once per model type: data synth -> model
create --dataset -> model info -> model set -> train (2 short epochs) -> evaluate --json ->
apply --overlay -> plugins list. Tiny images, few samples and the compact backbone keep each
chain to a few seconds."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIDE = 32
CASES = {
    "classification": ("classification", [], [], "top1_error"),
    "detection_rectangle1": ("detection", [], ["--set", "capacity=low", "--set", "min_confidence=0.01"], "mean_ap"),
    "detection_rectangle2": ("detection", ["--instance-type", "rectangle2"],
                             ["--set", "capacity=low", "--set", "min_confidence=0.01"], "mean_ap"),
    "segmentation": ("segmentation", [], [], "mean_iou"),
}


def dlbatch_command() -> list[str]:
    """The console script next to this interpreter (what `pip install` made of
    [project.scripts]), else the module."""
    script = Path(sys.executable).with_name("dlbatch")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dlbatch.cli.app"]


def cli(*args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="120")
    done = subprocess.run([*dlbatch_command(), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, f"dlbatch {' '.join(map(str, args))}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.parametrize("case", list(CASES))
def test_the_whole_chain_as_a_subprocess(tmp_path, case):
    model_type, synth_args, create_args, metric = CASES[case]
    data = cli("data", "synth", model_type, "data", "--num", 16, "--width", 40, "--height", 36, "--seed", 1,
               *synth_args, cwd=tmp_path).stdout.strip()
    assert (tmp_path / data).exists()

    cli("model", "create", model_type, "-o", "m.onnx", "--dataset", data, "--backbone", "compact", "--width", SIDE,
        "--height", SIDE, "--set", "batch_size=4", *create_args, cwd=tmp_path)
    cli("model", "set", "m.onnx", "learning_rate=0.005", "solver_type=adam", cwd=tmp_path)
    facts = json.loads(cli("model", "info", "m.onnx", "--json", cwd=tmp_path).stdout)
    assert facts["type"] == model_type and facts["image_dimensions"] == [SIDE, SIDE, 3] and facts["ops"]
    assert facts["parameters"]["learning_rate"] == 0.005 and facts["solver_type"] == "adam"
    if model_type == "detection":
        assert facts["parameters"]["instance_type"] == case.split("_")[1]

    train = cli("train", "m.onnx", data, "--out", "run", "--epochs", 2, "--seed", 2, cwd=tmp_path)
    split = re.search(r"(\d+) training and (\d+) validation samples \(80/20 split, seed 2\)", train.stdout)
    assert split and int(split[1]) + int(split[2]) == 16 and int(split[2]) >= 3, train.stdout
    assert f"evaluation after epoch 2/2: {metric}" in train.stdout and "epoch 2/2  iteration" in train.stdout
    run = tmp_path / "run"
    for name in ("best.onnx", "final.onnx", "log.jsonl", "curves.png"):
        assert (run / name).is_file(), name
    assert (run / "state").is_dir() and any((run / "state").iterdir())
    with Image.open(run / "curves.png") as im:
        im.verify()

    measures = json.loads(cli("evaluate", "run/best.onnx", data, "--json", cwd=tmp_path).stdout)
    assert 0.0 <= measures[metric] <= 1.0

    images = sorted(p for p in tmp_path.joinpath("data").rglob("*.png") if "labels" not in p.parts)[:2]
    applied = cli("apply", "run/final.onnx", *images, "--overlay", "overlays", cwd=tmp_path)
    lines = [json.loads(line) for line in applied.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line, path in zip(lines, images):
        with Image.open(path) as raw, Image.open(tmp_path / line["overlay"]) as drawn:
            assert drawn.size == raw.size and drawn.mode == "RGB"
        if model_type == "segmentation":  # the class-id image: a PNG whose histogram the line reports
            summary = line["segmentation_image"]
            with Image.open(tmp_path / summary["file"]) as label:
                ids, counts = np.unique(np.asarray(label), return_counts=True)
            assert {str(int(i)): int(n) for i, n in zip(ids, counts)} == summary["pixels_per_value"]
            assert sum(summary["pixels_per_value"].values()) == raw.size[0] * raw.size[1]
        if model_type == "detection":
            keys = ("bbox_row", "bbox_phi") if case.endswith("2") else ("bbox_row1", "bbox_col2")
            assert all(k in line for k in keys) and len(line["bbox_class_id"]) == len(line["bbox_confidence"])

    if model_type == "classification":  # the same for every model type: once is enough
        plugins = cli("plugins", "list", cwd=tmp_path).stdout
        assert "dlbatch.backends.numpy_cpu.plugin" in plugins


def test_a_real_process_prints_one_error_line_or_with_debug_the_traceback(tmp_path):
    plain = subprocess.run([*dlbatch_command(), "model", "info", "missing.onnx"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr == "error: model file missing.onnx does not exist\n"
    debug = subprocess.run([*dlbatch_command(), "--debug", "model", "info", "missing.onnx"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, COLUMNS="120"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DLModelFileError" in debug.stderr

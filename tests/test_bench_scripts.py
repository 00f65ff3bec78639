"""The benchmark scripts still run (tiny sizes): `make bench` is only run by hand, so without
this a broken case would surface in the next performance session, not in CI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_json(*args) -> dict:
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_calibrate_reports_gemm_and_copy_speed():
    rec = run_json(BENCH / "calibrate.py")
    assert rec["sgemm_1t_gflops"] > 0 and rec["copy_1t_gbps"] > 0


@pytest.mark.parametrize("impl", ["numpy_train", "numpy_infer", "dlbatch_ort_infer", "ort_infer", "torch_train",
                                  "handwritten_train"])
def test_step_case_prints_one_timed_record(impl):
    if impl in ("torch_train", "handwritten_train"):
        pytest.importorskip("torch")
    if impl.endswith("ort_infer"):
        pytest.importorskip("onnxruntime")
    rec = run_json(BENCH / "step_case.py", "--impl", impl, "--backbone", "compact", "--batch", 2, "--side", 16,
                   "--steps", 2, "--warmup", 1, "--threads", 1, "--layout", "channels_last")
    assert rec["impl"] == impl and rec["steps"] == 2
    assert 0 < rec["min_s"] <= rec["median_s"]
    assert rec["peak_step_mem_mb"] >= 0


@pytest.mark.parametrize("impl", ["numpy_train", "numpy_infer", "dlbatch_ort_infer", "ort_infer", "torch_train",
                                  "handwritten_train"])
def test_segmentation_step_case_prints_one_timed_record(impl):
    if impl in ("torch_train", "handwritten_train"):
        pytest.importorskip("torch")
    if impl.endswith("ort_infer"):
        pytest.importorskip("onnxruntime")
    rec = run_json(BENCH / "step_case.py", "--model", "segmentation", "--impl", impl, "--backbone", "compact",
                   "--batch", 2, "--side", 16, "--steps", 2, "--warmup", 1, "--threads", 1, "--layout", "nchw")
    assert rec["model"] == "segmentation" and rec["impl"] == impl and rec["steps"] == 2
    assert 0 < rec["min_s"] <= rec["median_s"]
    assert rec["peak_step_mem_mb"] >= 0


@pytest.mark.parametrize("impl", ["numpy_train", "numpy_infer", "dlbatch_ort_infer", "ort_infer", "torch_train",
                                  "handwritten_train", "postprocess"])
def test_detection_step_case_prints_one_timed_record(impl):
    if impl in ("torch_train", "handwritten_train"):
        pytest.importorskip("torch")
    if impl.endswith("ort_infer"):
        pytest.importorskip("onnxruntime")
    rec = run_json(BENCH / "step_case.py", "--model", "detection", "--impl", impl, "--backbone", "compact",
                   "--batch", 2, "--side", 32, "--steps", 2, "--warmup", 1, "--threads", 1,
                   "--layout", "channels_last")
    assert rec["model"] == "detection" and rec["impl"] == impl and rec["steps"] == 2
    assert 0 < rec["min_s"] <= rec["median_s"]
    assert rec["peak_step_mem_mb"] >= 0
    if impl == "postprocess":
        assert rec["per_image_s"] == pytest.approx(rec["median_s"] / 2)
        assert rec["candidates_per_image"] > 0 and rec["detections_per_image"] > 0


@pytest.mark.parametrize("impl", ["numpy_train", "numpy_infer", "ort_infer", "torch_train", "handwritten_train",
                                  "postprocess"])
def test_rectangle2_detection_step_case_prints_one_timed_record(impl):
    if impl in ("torch_train", "handwritten_train"):
        pytest.importorskip("torch")
    if impl == "ort_infer":
        pytest.importorskip("onnxruntime")
    rec = run_json(BENCH / "step_case.py", "--model", "detection", "--instance-type", "rectangle2", "--impl", impl,
                   "--backbone", "compact", "--batch", 2, "--side", 32, "--steps", 2, "--warmup", 1, "--threads", 1,
                   "--layout", "nchw")
    assert rec["model"] == "detection" and rec["instance_type"] == "rectangle2"
    assert rec["impl"] == impl and rec["steps"] == 2
    assert 0 < rec["min_s"] <= rec["median_s"]
    assert rec["peak_step_mem_mb"] >= 0
    if impl == "postprocess":
        assert rec["per_image_s"] == pytest.approx(rec["median_s"] / 2)
        assert rec["candidates_per_image"] > 0 and rec["detections_per_image"] > 0


def test_step_case_layouts():
    """--layout nchw / channels_last: the hand-written loop in that layout (the record names
    it); the default, both: each layout in its own process, the faster one's record, with
    each layout's times and memory."""
    pytest.importorskip("torch")
    args = ("--impl", "handwritten_train", "--backbone", "compact", "--batch", 2, "--side", 16, "--steps", 2,
            "--warmup", 1, "--threads", 1)
    rec = run_json(BENCH / "step_case.py", *args)
    assert sorted(rec["layouts"]) == ["channels_last", "nchw"]
    best = min(rec["layouts"], key=lambda k: rec["layouts"][k]["median_s"])
    assert rec["layout"] == best and rec["median_s"] == rec["layouts"][best]["median_s"]
    for r in rec["layouts"].values():
        assert 0 < r["min_s"] <= r["median_s"] and r["peak_step_mem_mb"] >= 0
    one = run_json(BENCH / "step_case.py", *args, "--layout", "nchw")
    assert one["layout"] == "nchw" and "layouts" not in one and one["steps"] == 2


def test_rotated_nms_bench_prints_its_records():
    out = run_json(BENCH / "rotated_nms.py", "--sizes", 40, 120, "--repeats", 1)
    records = out["rotated_nms"]
    assert [r["n"] for r in records] == [40, 120]
    for r in records:
        for key in ("nms_s", "batched_nms_s", "iou_s", "clip_pairs_s", "iou_full_s"):
            assert r[key] > 0, key
        assert r["iou_s"] <= r["nms_s"]
        assert 0 < r["kept_nms"] <= r["kept_batched_nms"] <= r["n"]  # per class keeps at least as many
        assert 0 < r["prefilter_pairs"] < r["n"] * (r["n"] - 1) // 2
        assert r["suppression_matrix_mb"] == pytest.approx(r["n"] ** 2 / 1e6)


def test_rotated_nms_candidates_cluster_around_objects():
    """About 80% of the candidates lie in clusters: they have near-duplicates (IoU > 0.5), while
    the boxes NMS keeps are few and the scattered false candidates mostly survive."""
    import numpy as np

    sys.path.insert(0, str(BENCH))
    from rotated_nms import candidate_boxes

    from dlbatch.models.detection.nms import nms
    from dlbatch.models.detection.rotated_iou import rotated_pairwise_iou

    boxes, scores, classes = candidate_boxes(1000, classes=3, seed=1)
    assert boxes.shape == (1000, 5) and scores.shape == classes.shape == (1000,)
    assert set(np.unique(classes)) == {0, 1, 2}
    assert (boxes[:, 3] > 0).all() and (boxes[:, 4] > 0).all() and ((scores > 0) & (scores < 1)).all()
    iou = rotated_pairwise_iou(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    assert 0.6 < (iou > 0.5).any(axis=1).mean() < 0.9
    assert len(nms(boxes, scores, 0.5, rotated_pairwise_iou)) < 400


def _load_dlbatch_values(net, model, backbone):
    """Copy a dlbatch segmentation model's weights and statistics into handwritten_torch's
    Segmenter: backbone tensors in order, decoder tensors by the stride in their name."""
    import re

    import numpy as np
    import torch
    from handwritten_torch import SEGMENTATION_STRIDES

    state = net.state_dict()
    taps = SEGMENTATION_STRIDES[backbone]
    trainable = iter(n for n in model.graph.trainable if not n.startswith("decoder."))
    stats = iter(n for n in model.graph.statistics if not n.startswith("decoder."))
    mapping = {}
    for name in state:
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("stages."):
            mapping[name] = next(stats if name.endswith(("running_mean", "running_var")) else trainable)
        elif m := re.fullmatch(r"laterals\.(\d+)\.(weight|bias)", name):
            mapping[name] = f"decoder.lateral{taps[int(m[1])]}.{m[2]}"
        elif m := re.fullmatch(r"refines\.(\d+)\.([01])\.(\w+)", name):
            part = "conv" if m[2] == "0" else "bn"
            leaf = "scale" if (part, m[3]) == ("bn", "weight") else m[3]
            mapping[name] = f"decoder.refine{taps[int(m[1])]}.{part}.{leaf}"
        else:
            mapping[name] = f"decoder.{name}"
    assert sorted(mapping.values()) == sorted(model.graph.trainable + model.graph.statistics)
    for name, source in mapping.items():
        state[name] = torch.tensor(np.asarray(model.values[source]))
    net.load_state_dict(state)
    return mapping


@pytest.mark.parametrize("backbone,side", [("compact", 16), ("resnet18", 64)])
def test_handwritten_segmenter_is_the_dlbatch_network(backbone, side):
    """Given dlbatch's weights, the hand-written reference gives the same logits, losses and
    weights after two SGD steps: the bench compares the same network and solver."""
    torch = pytest.importorskip("torch")
    import numpy as np

    import dlbatch
    from dlbatch.core.infer import raw_outputs
    sys.path.insert(0, str(BENCH))
    from handwritten_torch import HandwrittenLoop
    from step_case import segmentation_data

    torch.set_num_threads(1)
    data = segmentation_data(2, side, 3, 4, seed=1)
    model = dlbatch.create_dl_model("segmentation", backbone=backbone, class_ids=[0, 1, 2, 3],
                                    image_dimensions=[side, side, 3], batch_size=2, learning_rate=0.01,
                                    momentum=0.9, weight_prior=1e-4)
    loop = HandwrittenLoop(backbone, 3, 4, model="segmentation")
    mapping = _load_dlbatch_values(loop.net, model, backbone)
    initial = {name: np.array(model.values[source], dtype=np.float64) for name, source in mapping.items()}
    x = torch.tensor(np.stack([s["image"].transpose(2, 0, 1) for s in data]))
    y = torch.tensor(np.stack([s["segmentation_image"] for s in data]).astype(np.int64))
    expected = raw_outputs(model, data)[model.meta["logits"]]
    np.testing.assert_allclose(loop.infer(x).numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    for _ in range(2):
        loss = dlbatch.train_dl_model_batch(model, data)["loss_multinomial_logistic"]
        assert loop.step(x, y) == pytest.approx(loss, rel=1e-5)
    state = loop.net.state_dict()
    for name, source in mapping.items():  # every tensor's change agrees to 1% (in norm; float32 rounding)
        want = np.asarray(model.values[source], dtype=np.float64) - initial[name]
        got = state[name].numpy().astype(np.float64) - initial[name]
        ulp = np.finfo(np.float32).eps * np.linalg.norm(initial[name])
        assert np.linalg.norm(want) > 0, name
        assert np.linalg.norm(got - want) <= 1e-2 * np.linalg.norm(want) + 2 * ulp, name


def test_run_all_tables_segmentation_cases(monkeypatch, capsys):
    """run_all --model segmentation: the segmentation keys, ratios and targets, from fake records."""
    sys.path.insert(0, str(BENCH))
    import run_all

    def fake_case(impl, backbone, batch, side, steps, device="cpu", threads=2, model="classification"):
        assert model == "segmentation"
        ms = {"numpy_train": 1.1, "torch_train": 1.0, "handwritten_train": 1.0, "numpy_infer": 2.0, "ort_infer": 1.0}
        return {"model": model, "impl": impl, "backbone": backbone, "batch": batch, "side": side,
                "median_s": ms[impl], "min_s": ms[impl], "steps": steps, "peak_step_mem_mb": 100.0}

    monkeypatch.setattr(run_all, "run_case", fake_case)
    monkeypatch.setattr(run_all, "machine_state", lambda: {})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--quick", "--model", "segmentation"])
    run_all.main()
    out = capsys.readouterr().out
    for size in ("compact 16x3x64x64", "resnet18 4x3x256x256"):
        assert f"| segmentation {size} | numpy_train / handwritten_torch_train | 1.100 | 1.100-1.100 | 1.100 " \
               f"| <= 1.2 (met) |" in out
        assert f"| segmentation {size} | numpy_infer / onnxruntime_infer | 2.000 | 2.000-2.000 | 2.000 " \
               f"| <= 1.5 (missed) |" in out
    assert "| compact 16x3x64x64 |" not in out  # no classification case


def _load_dlbatch_detector(net, model):
    """Copy a dlbatch detection model's weights and statistics into handwritten_torch's
    Detector: backbone tensors in order (the Detector has no stage the pyramid does not read,
    so a trailing stage of dlbatch's backbone is left out), pyramid and heads by name."""
    import re

    import numpy as np
    import torch

    state = net.state_dict()
    head = ("fpn.", "class_head.", "box_head.")
    trainable = iter(n for n in model.graph.trainable if not n.startswith(head))
    stats = iter(n for n in model.graph.statistics if not n.startswith(head))
    mapping = {}
    for name in state:
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("stages."):
            mapping[name] = next(stats if name.endswith(("running_mean", "running_var")) else trainable)
        elif m := re.fullmatch(r"(lateral|out|extra)\.(\d+)\.(weight|bias)", name):
            mapping[name] = f"fpn.{m[1]}{m[2]}.{m[3]}"
        elif m := re.fullmatch(r"(class|box)_convs\.(\d+)\.(weight|bias)", name):
            mapping[name] = f"{m[1]}_head.conv{m[2]}.{m[3]}"
        else:
            m = re.fullmatch(r"(class|box)_out\.(weight|bias)", name)
            mapping[name] = f"{m[1]}_head.out.{m[2]}"
    left_out = set(model.graph.trainable + model.graph.statistics) - set(mapping.values())
    assert len(set(mapping.values())) == len(mapping)
    assert all(n.startswith("layer4.") for n in left_out), sorted(left_out)
    for name, source in mapping.items():
        assert tuple(state[name].shape) == tuple(np.shape(model.values[source])), (name, source)
        state[name] = torch.tensor(np.asarray(model.values[source]))
    net.load_state_dict(state)
    return mapping


@pytest.mark.parametrize("backbone,side,batch,instance_type", [("compact", 32, 2, "rectangle1"),
                                                             ("resnet18", 64, 2, "rectangle1"),
                                                             ("compact", 32, 2, "rectangle2")])
def test_handwritten_detector_is_the_dlbatch_network(backbone, side, batch, instance_type):
    """Given dlbatch's weights, the hand-written detector gives the same class logits and box
    deltas, the same focal and smooth-L1 values on the same targets, and the same weights after
    two SGD steps (rectangle2: 5 box outputs per anchor, oriented anchors, rotated IoU)."""
    torch = pytest.importorskip("torch")
    import numpy as np

    import dlbatch
    from dlbatch.core.infer import raw_outputs
    sys.path.insert(0, str(BENCH))
    from handwritten_torch import DetectionLoop, DetectionTargets
    from step_case import detection_boxes, detection_data, detection_options, handwritten_detection

    torch.set_num_threads(1)
    data = detection_data(batch, side, 3, 3, seed=3, instance_type=instance_type)  # rectangle1: 2 and 4 boxes
    model = dlbatch.create_dl_model("detection", backbone=backbone, class_ids=[1, 2, 3],
                                    image_dimensions=[side, side, 3], batch_size=batch, learning_rate=0.01,
                                    momentum=0.9, weight_prior=1e-4, capacity="medium", min_level=2, max_level=4,
                                    **detection_options(instance_type))
    network, target_options = handwritten_detection(instance_type)
    loop = DetectionLoop(backbone, 3, 3, **network)
    mapping = _load_dlbatch_detector(loop.net, model)
    initial = {name: np.array(model.values[source], dtype=np.float64) for name, source in mapping.items()}
    x = torch.tensor(np.stack([s["image"].transpose(2, 0, 1) for s in data]))
    boxes, labels = detection_boxes(data, model)
    targets = DetectionTargets(side, side, **target_options)(boxes, labels)
    assert targets[2] > 1  # some anchors are positive
    expected = raw_outputs(model, data)
    logits, deltas = loop.infer(x)
    for got, name in ((logits, "class_logits"), (deltas, "box_deltas")):
        want = expected[name]
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    for _ in range(2):
        result = dlbatch.train_dl_model_batch(model, data)
        total = loop.step(x, targets)
        focal, box = map(float, loop.terms)
        assert focal == pytest.approx(result["loss_focal"], rel=1e-5)
        assert box == pytest.approx(result["loss_huber"], rel=1e-5)
        assert total == pytest.approx(result["loss_focal"] + result["loss_huber"], rel=1e-5)
    state = loop.net.state_dict()
    for name, source in mapping.items():  # every tensor's change agrees to 1% (in norm; float32 rounding)
        want = np.asarray(model.values[source], dtype=np.float64) - initial[name]
        got = state[name].numpy().astype(np.float64) - initial[name]
        ulp = np.finfo(np.float32).eps * np.linalg.norm(initial[name])
        assert np.linalg.norm(want) > 0, name
        assert np.linalg.norm(got - want) <= 1e-2 * np.linalg.norm(want) + 2 * ulp, name


def test_run_all_tables_detection_cases(monkeypatch, capsys):
    """run_all --model detection: the detection keys, ratios, targets and the post-processing
    table, from fake records."""
    sys.path.insert(0, str(BENCH))
    import run_all

    def fake_case(impl, backbone, batch, side, steps, device="cpu", threads=2, model="classification"):
        assert model == "detection"
        ms = {"numpy_train": 1.1, "torch_train": 1.0, "handwritten_train": 1.0, "numpy_infer": 2.0, "ort_infer": 1.0,
              "postprocess": 0.004 * batch}
        rec = {"model": model, "impl": impl, "backbone": backbone, "batch": batch, "side": side,
               "median_s": ms[impl], "min_s": ms[impl], "steps": steps, "peak_step_mem_mb": 100.0}
        if impl == "postprocess":
            rec.update(per_image_s=0.004, candidates_per_image=40.0, detections_per_image=3.5)
        return rec

    monkeypatch.setattr(run_all, "run_case", fake_case)
    monkeypatch.setattr(run_all, "machine_state", lambda: {})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--quick", "--model", "detection"])
    run_all.main()
    out = capsys.readouterr().out
    for size in ("compact 8x3x128x128", "resnet18 2x3x512x512"):
        assert f"| detection {size} | numpy_train / handwritten_torch_train | 1.100 | 1.100-1.100 | 1.100 " \
               f"| <= 1.2 (met) |" in out
        assert f"| detection {size} | torch_backend_train / handwritten_torch_train | 1.000 | 1.000-1.000 " \
               f"| 1.000 | <= 1.05 (met) |" in out
        assert f"| detection {size} | 4.00 | 40 | 3.5 |" in out
    assert "| segmentation " not in out and "| compact 16x3x64x64 |" not in out


def test_run_all_tables_rectangle2_detection_case_and_rotated_nms(monkeypatch, capsys):
    """run_all --model detection_r2: the oriented case's key, ratios, targets and
    post-processing row, and the rotated-NMS table, from fake records."""
    sys.path.insert(0, str(BENCH))
    import run_all

    def fake_case(impl, backbone, batch, side, steps, device="cpu", threads=2, model="classification"):
        assert model == "detection_r2" and (backbone, batch, side) == ("compact", 8, 128)
        ms = {"numpy_train": 1.3, "torch_train": 1.0, "handwritten_train": 1.0, "numpy_infer": 1.2, "ort_infer": 1.0,
              "postprocess": 0.006 * batch}
        rec = {"model": "detection", "instance_type": "rectangle2", "impl": impl, "backbone": backbone,
               "batch": batch, "side": side, "median_s": ms[impl], "min_s": ms[impl], "steps": steps,
               "peak_step_mem_mb": 100.0}
        if impl == "postprocess":
            rec.update(per_image_s=0.006, candidates_per_image=30.0, detections_per_image=2.5)
        return rec

    nms_records = [{"n": n, "nms_s": 0.05 * k, "iou_s": 0.04 * k, "clip_pairs_s": 0.01 * k, "batched_nms_s": 0.06 * k,
                    "kept_nms": 250 * k, "kept_batched_nms": 320 * k, "prefilter_pairs": 22000 * k,
                    "suppression_matrix_mb": n * n / 1e6, "peak_call_mem_mb": 17.0 * k}
                   for n, k in ((1000, 1), (10000, 10))]
    monkeypatch.setattr(run_all, "run_case", fake_case)
    monkeypatch.setattr(run_all, "run_rotated_nms", lambda quick=False, sizes=None: nms_records)
    monkeypatch.setattr(run_all, "machine_state", lambda: {})
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--quick", "--model", "detection_r2"])
    run_all.main()
    out = capsys.readouterr().out
    key = "detection rectangle2 compact 8x3x128x128"
    assert f"| {key} | numpy_train / handwritten_torch_train | 1.300 | 1.300-1.300 | 1.300 | <= 1.2 (missed) |" in out
    assert f"| {key} | numpy_infer / onnxruntime_infer | 1.200 | 1.200-1.200 | 1.200 | <= 1.5 (met) |" in out
    assert f"| {key} | 6.00 | 30 | 2.5 |" in out
    assert "| 1,000 | 50.0 | 40.0 | 10.0 | 60.0 | 250 / 320 | 22,000 | 1 | 17 |" in out
    assert "| 10,000 | 500.0 | 400.0 | 100.0 | 600.0 | 2500 / 3200 | 220,000 | 100 | 170 |" in out
    summary = json.loads(out[out.index("{\n"):out.index("\n}\n") + 2])
    assert summary["rotated_nms"] == nms_records
    assert "resnet18" not in out and "| detection compact" not in out


def test_run_all_runs_the_rotated_nms_bench():
    """run_rotated_nms runs rotated_nms.py and returns its records."""
    sys.path.insert(0, str(BENCH))
    import run_all

    records = run_all.run_rotated_nms(quick=True, sizes=[30])
    assert len(records) == 1 and records[0]["n"] == 30 and records[0]["nms_s"] > 0, records


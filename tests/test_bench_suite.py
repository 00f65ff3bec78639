"""The benchmark suite's scripts (bench/suite_networks.py, suite_case.py, suite.py) in smoke mode:
every network builds, exports, is read by dlbatch, and one step of every implementation prints
a timed JSON record; dlbatch's step on the exported file is the hand-written loop's step on the
module; the suite's ratios are medians of paired rounds. `make bench` is run by hand only, so a
broken case would otherwise surface in the next performance session, not in CI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))
import suite  # noqa: E402
import suite_case  # noqa: E402
import suite_networks  # noqa: E402

BATCH, SIDE = 2, suite.SMOKE_SIDE


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """suite.py --smoke: every suite network x every implementation (both layouts of the
    hand-written loop), one timed step each, in one suite_case.py process; the exported files
    stay in the cache dir for the tests below."""
    cache, out = tmp_path_factory.mktemp("suite_cache"), tmp_path_factory.mktemp("suite_out")
    proc = subprocess.run([sys.executable, str(BENCH / "suite.py"), "--smoke", "--threads", "1",
                           "--cache-dir", str(cache), "--out-dir", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "suite.json").read_text()), (out / "suite.md").read_text(), cache


@pytest.fixture
def one_torch_thread():
    """Torch steps in this process on one thread (two spin badly on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_network_and_implementation_prints_a_timed_record(smoke):
    out, _, _ = smoke
    assert [c["network"] for c in out["cases"]] == list(suite_networks.NETWORKS)
    for case in out["cases"]:
        assert case["case"] == f"{case['network']} {BATCH}x3x{SIDE}x{SIDE}" and case["errors"] == []
        assert case["forward_macs"] > 0 and case["parameters"] > 0
        (rnd,) = case["rounds"]
        assert sorted(rnd) == sorted([*suite.SUITE_IMPLS, *suite.PAIRED])
        pair = rnd["ort_pair"]
        assert round(pair["paired_ratio"], 3) == case["ratios"]["dlbatch_onnxruntime_infer / onnxruntime_infer"] > 0
        for label, r in rnd.items():
            assert r["network"] == case["network"] and suite.label(r) == label
            assert r["steps"] == 1 and r["peak_step_mem_mb"] >= 0 and (r["batch"], r["side"]) == (BATCH, SIDE)
            if label in suite.PAIRED:  # split out of the pair's record
                assert r["paired_in"] == "ort_pair" and r["median_s"] == pair[label]["median_s"]
            if label != "ort_pair":
                assert 0 < r["min_s"] <= r["median_s"]
        for name, value in case["ratios"].items():
            if name.endswith("_mem"):  # a 1-step tiny case may grow no memory at all: no ratio
                assert value is None or value >= 0
            else:
                assert value is not None and value > 0, name


def test_the_smoke_run_writes_the_table_and_the_targets(smoke):
    out, table, _ = smoke
    for case in out["cases"]:
        assert f"| {case['case']} |" in table
    assert set(out["targets"]) == set(suite.TARGETS)
    assert out["targets"]["numpy_train_geomean"]["where"] == f"{len(suite_networks.NETWORKS)} cases"
    assert "geometric mean" in table
    assert "| dlbatch onnxruntime infer | onnxruntime |" in table and "dlbatch onnxruntime / onnxruntime |" in table
    assert "| dlbatch with onnxruntime / raw onnxruntime session, worst case |" in table
    worst = out["targets"]["dlbatch_onnxruntime_infer_worst"]
    assert worst["bound"] == 1.05 and worst["value"] == max(
        c["ratios"]["dlbatch_onnxruntime_infer / onnxruntime_infer"] for c in out["cases"])


@pytest.mark.parametrize("network", list(suite_networks.NETWORKS))
def test_dlbatch_trains_the_same_network_as_the_handwritten_loop(smoke, one_torch_thread, network):
    """One numpy-backend step on the exported file and one hand-written step on a fresh module of
    the same seed: the same loss (batch norm on batch statistics) and the same updated weights."""
    import dlbatch

    cache = smoke[2]
    files = suite_case.model_files(network, SIDE, 3, 10, cache)  # exported by the smoke run
    model = dlbatch.read_dl_model(files["train"], backend="numpy", batch_size=BATCH, **suite_case.SOLVER)
    data = suite_case.samples(BATCH, SIDE, 3, 10)
    net = suite_networks.build(network)
    assert sorted(model.graph.trainable) == sorted(n for n, _ in net.named_parameters())
    loop = suite_case.module_loop(net, **suite_case.SOLVER)
    x = torch.from_numpy(np.stack([s["image"] for s in data])).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([s["image_label_id"] for s in data])
    torch_loss = loop.step(x, y)
    result = dlbatch.train_dl_model_batch(model, data)
    assert result["loss_multinomial_logistic"] == pytest.approx(torch_loss, rel=1e-5)
    after = model.state_dict()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(after[name], p.detach().numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_dlbatch_on_onnxruntime_runs_the_network_the_raw_session_runs(smoke):
    """dlbatch_ort_infer and ort_infer time the same function: dlbatch's onnxruntime backend on the
    training-form export gives the raw session's outputs on the eval-form export (and the numpy
    backend's), for every suite network."""
    import onnxruntime as ort

    import dlbatch
    from dlbatch.core.infer import raw_outputs

    data = suite_case.samples(BATCH, SIDE, 3, 10, seed=1)
    wrong = []
    for network in suite_networks.NETWORKS:
        files = suite_case.model_files(network, SIDE, 3, 10, smoke[2])  # exported by the smoke run
        model = dlbatch.read_dl_model(files["train"], backend="numpy", batch_size=BATCH, **suite_case.SOLVER)
        enc = model.model_type.encode(data, model.hyperparameters, model.meta, labels=False, dtype="float32")
        session = ort.InferenceSession(str(files["eval"]), providers=["CPUExecutionProvider"])
        (raw,) = session.run(None, {session.get_inputs()[0].name: next(iter(enc.inputs.values()))})
        (on_numpy,) = raw_outputs(model, data).values()
        np.testing.assert_allclose(on_numpy, raw, rtol=1e-4, atol=1e-5 * np.abs(raw).max(), err_msg=network)
        dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
        (on_ort,) = raw_outputs(model, data).values()
        if not np.allclose(on_ort, raw, rtol=1e-4, atol=1e-5 * np.abs(raw).max()):
            wrong.append(f"{network}: max |difference| {np.abs(on_ort - raw).max():.3g} of max |output| "
                         f"{np.abs(raw).max():.3g}")
    assert not wrong, wrong


def rec(seconds, mem=10.0):
    return {"median_s": seconds, "peak_step_mem_mb": mem}


def pair(ratio, dlbatch_s, ort_s):
    """An ort_pair record: the paired ratio it measured and each call's median."""
    return {"ort_pair": {"paired_ratio": ratio, "steps": 1, "peak_step_mem_mb": 1.0,
                         "dlbatch_ort_infer": {"median_s": dlbatch_s, "min_s": dlbatch_s},
                         "ort_infer": {"median_s": ort_s, "min_s": ort_s}}}


def test_ratios_are_medians_of_paired_rounds_against_the_faster_layout():
    rounds = [
        {"numpy_train": rec(1.0, 30), "handwritten_train_nchw": rec(2.0, 10), "handwritten_train_channels_last":
            rec(0.5, 20), "torch_train": rec(0.5), "numpy_infer": rec(0.3), **pair(1.1, 0.11, 0.1)},
        {"numpy_train": rec(3.0, 30), "handwritten_train_nchw": rec(1.0, 10), "handwritten_train_channels_last":
            rec(4.0, 20), "torch_train": rec(1.0), "numpy_infer": rec(0.3), **pair(1.2, 0.3, 0.2)},
        {"numpy_train": rec(2.0, 30), "handwritten_train_nchw": rec(3.0, 10), "handwritten_train_channels_last":
            rec(1.0, 20), "torch_train": rec(2.0), "numpy_infer": {"error": "x"}, **pair(1.0, 0.1, 0.1)},
    ]
    s = suite.summarize_case([suite.split_pair(r) for r in rounds])
    # per round numpy / faster layout: 1/0.5, 3/1, 2/1 -> median 2 (the ratio of the medians, 2/1, agrees
    # only by chance; the torch backend's 1.0, 1.0, 2.0 -> 1)
    assert s["ratios"]["numpy_train / handwritten_torch_train"] == 2.0
    assert s["ranges"]["numpy_train / handwritten_torch_train"] == [2.0, 3.0]
    assert s["ratios"]["torch_backend_train / handwritten_torch_train"] == 1.0
    assert s["ratios"]["numpy_infer / onnxruntime_infer"] == pytest.approx(2.25)  # rounds 1, 2: 3 and 1.5
    # dlbatch on onnxruntime / the raw session: the pairs' own ratios 1.1, 1.2, 1.0 -> 1.1 (not the
    # ratios of their medians, 1.1, 1.5, 1.0); their medians are the step times
    assert s["ratios"]["dlbatch_onnxruntime_infer / onnxruntime_infer"] == pytest.approx(1.1)
    assert s["ranges"]["dlbatch_onnxruntime_infer / onnxruntime_infer"] == [1.0, 1.2]
    assert s["step_ms"]["ort_infer"] == 100.0 and s["step_ms"]["dlbatch_ort_infer"] == 110.0
    assert s["ratios"]["numpy_train_mem / handwritten_torch_train_mem"] == 1.5  # 30/20, 30/10, 30/20
    assert s["handwritten_layout"] == "channels_last"
    assert s["step_ms"]["numpy_train"] == 2000.0 and "numpy_infer: x" in s["errors"]
    targets = suite.check_targets([{"case": "a", **s}, {"case": "b", "ratios": {
        **s["ratios"], "numpy_train / handwritten_torch_train": 0.5}}])
    assert targets["numpy_train_geomean"]["value"] == pytest.approx(1.0)  # sqrt(2 * 0.5)
    assert targets["numpy_train_worst"] == {"value": 2.0, "where": "a", "bound": 1.3, "met": False}
    assert targets["dlbatch_onnxruntime_infer_worst"] == {"value": 1.1, "where": "b", "bound": 1.05, "met": False}


def test_the_full_suite_covers_the_issues_shapes():
    """At least 10 networks, every suite network in it, batch 1, 16 and 64, sides 32 to 256."""
    networks = {n for n, _, _ in suite.CASES}
    assert len(networks) >= 10 and set(suite_networks.NETWORKS) <= networks
    assert {1, 16, 64} <= {b for _, b, _ in suite.CASES}
    sides = [s for _, _, s in suite.CASES]
    assert min(sides) == 32 and max(sides) == 256
    assert set(suite.STEP_CASE_NETWORKS) <= networks

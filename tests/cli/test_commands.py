"""`dlbatch data|train|evaluate|apply` through CliRunner on one tiny classification dataset,
checked against the library (read_dl_dataset, evaluate_dl_model, apply_dl_model) and the
files on disk."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import dlbatch
from dlbatch.cli.app import app
from dlbatch.datasets import read_dl_dataset

runner = CliRunner()
NUM, SIDE = 20, 16


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A synthetic dataset, a model created for it and a 2-epoch run with a change strategy."""
    root = tmp_path_factory.mktemp("cli")
    data = invoke("data", "synth", "classification", root / "data", "--num", NUM, "--width", 24, "--height", 20,
                  "--seed", 3).stdout.strip()
    model = root / "m.onnx"
    invoke("model", "create", "classification", "-o", model, "--dataset", data, "--width", SIDE, "--height", SIDE,
           "--backbone", "compact", "--set", "batch_size=4")
    change = root / "change.json"
    change.write_text(json.dumps({"model_param": "learning_rate", "initial_value": 0.02, "epochs": [1],
                                  "values": [0.005]}))
    out = invoke("train", model, data, "--out", root / "run", "--epochs", 2, "--seed", 5,
                 "--change", f"@{change}", "--augment", '{"augmentation_percentage": 50, "mirror": "c"}').output
    return {"root": root, "data": data, "model": model, "out": out, "run": root / "run"}


def test_data_synth_prints_the_path_read_dl_dataset_takes(run):
    ds = read_dl_dataset(run["data"])
    assert len(ds) == NUM and ds.model_type == "classification"
    facts = json.loads(invoke("data", "info", run["data"], "--json").output)
    assert facts["num_samples"] == NUM and facts["class_names"] == list(ds.class_names)


def test_train_writes_checkpoints_state_log_and_curves(run):
    out, files = run["out"], run["run"]
    assert f"{NUM * 4 // 5} training and {NUM // 5} validation samples (80/20 split, seed 5)" in out
    assert "training 2 epochs x 4 iterations (4 samples each), main metric top1_error" in out
    assert "epoch 1/2  iteration 4/4  loss" in out and "epoch 2/2  iteration 4/4  loss" in out
    assert "evaluation after epoch 1/2: top1_error" in out and "│ accuracy" in out
    for name in ("best.onnx", "final.onnx", "log.jsonl", "curves.png"):
        assert (files / name).is_file(), name
    assert (files / "state").is_dir() and any((files / "state").iterdir())
    with Image.open(files / "curves.png") as im:
        im.verify()
    records = [json.loads(line) for line in (files / "log.jsonl").read_text().splitlines()]
    assert records
    final = dlbatch.read_dl_model(files / "final.onnx")
    assert int(final.solver_state_dict()["step"]) == 8
    # the change strategy from the file: 0.02 in epoch 1, 0.005 after one epoch (HALCON counts from 0)
    assert final.get_param("learning_rate") == 0.005
    assert "learning_rate 0.0200" in out and "learning_rate 0.0050" in out


def test_train_refuses_a_used_out_dir_and_resumes_with_resume(run):
    args = ["train", run["model"], run["data"], "--out", run["run"], "--seed", 5,
            "--change", json.dumps({"model_param": "learning_rate", "initial_value": 0.02, "epochs": [1],
                                    "values": [0.005]}),
            "--augment", '{"augmentation_percentage": 50, "mirror": "c"}']
    result = runner.invoke(app, [str(a) for a in args + ["--epochs", "2"]])
    assert result.exit_code == 2 and "--resume" in result.stderr and result.stderr.count("\n") == 1
    out = invoke(*args, "--epochs", 3, "--resume").output
    assert "resuming after epoch 2" in out and "epoch 3/3  iteration 4/4" in out and "epoch 1/3" not in out
    assert int(dlbatch.read_dl_model(run["run"] / "final.onnx").solver_state_dict()["step"]) == 12


def test_train_uses_a_datasets_own_splits_or_validation(tmp_path, run):
    ds = read_dl_dataset(run["data"])
    halcon = tmp_path / "halcon.json"
    names = ["train"] * 12 + ["validation"] * 5 + ["test"] * 3
    samples = [{"image_file_name": str((read_dl_dataset(run["data"])[i]["image_file_name"])), "image_id": i,
                "image_label_id": int(ds[i]["image_label_id"]), "split": names[i]} for i in range(NUM)]
    halcon.write_text(json.dumps({"class_ids": list(ds.class_ids), "class_names": list(ds.class_names),
                                  "image_dir": str(run["data"]), "samples": samples}))
    out = invoke("train", run["model"], halcon, "--out", tmp_path / "a", "--epochs", 1).output
    assert "12 training and 5 validation samples (the dataset's train/validation splits)" in out
    got = json.loads(invoke("evaluate", tmp_path / "a" / "final.onnx", halcon, "--split", "test", "--json").output)
    assert got["num_samples"] == 3
    out = invoke("train", run["model"], run["data"], "--validation", halcon, "--out", tmp_path / "b",
                 "--epochs", 1, "--set", "batch_size=10").output
    assert f"{NUM} training and {NUM} validation samples (validation set {halcon})" in out
    assert "x 2 iterations (10 samples each)" in out  # --set reached the model


def test_evaluate_json_equals_the_library_on_the_same_samples(run, tmp_path):
    result = invoke("evaluate", run["run"] / "best.onnx", run["data"], "--json", "--plots", tmp_path / "plots")
    got = json.loads(result.stdout)  # exactly one JSON object on stdout
    model = dlbatch.read_dl_model(run["run"] / "best.onnx")
    ds = read_dl_dataset(run["data"])
    expected = dlbatch.evaluate_dl_model(model, dlbatch.preprocess_dl_samples([ds[i] for i in range(len(ds))], model))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[key], dtype=float), np.asarray(value, dtype=float), err_msg=key)
    assert got["accuracy"] + got["top1_error"] == pytest.approx(1.0)
    [png] = list((tmp_path / "plots").iterdir())
    with Image.open(png) as im:
        im.verify()
    table = invoke("evaluate", run["run"] / "best.onnx", run["data"]).output
    assert "top1_error" in table and "confusion matrix" in table


def test_evaluate_a_split_that_does_not_exist_is_one_line(run):
    result = runner.invoke(app, ["evaluate", str(run["run"] / "best.onnx"), str(run["data"]), "--split", "test"])
    assert result.exit_code == 2 and "no split 'test'" in result.stderr and "none" in result.stderr


def test_apply_prints_one_json_line_per_image_and_draws_overlays(run, tmp_path):
    ds = read_dl_dataset(run["data"])
    paths = [ds[i]["image_file_name"] for i in range(3)]
    paths = [p if str(p).startswith("/") else str(run["data"]) + "/" + str(p) for p in paths]
    result = invoke("apply", run["run"] / "final.onnx", *paths, "--overlay", tmp_path / "ov")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    model = dlbatch.read_dl_model(run["run"] / "final.onnx")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    expected = dlbatch.apply_dl_model(model, dlbatch.preprocess_dl_samples([{"image": im} for im in images], model))
    assert [line["image"] for line in lines] == paths
    for line, exp, image in zip(lines, expected, images):
        assert line["classification_class_ids"] == list(exp["classification_class_ids"])
        np.testing.assert_allclose(line["classification_confidences"], exp["classification_confidences"], rtol=1e-6)
        with Image.open(line["overlay"]) as im:
            assert im.size == (image.shape[1], image.shape[0])


def test_apply_on_a_file_that_is_not_an_image_is_one_line(run, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = runner.invoke(app, ["apply", str(run["run"] / "final.onnx"), str(bad)])
    assert result.exit_code == 2 and "bad.png" in result.stderr and result.stderr.count("\n") == 1

"""`dlbatch model create|info|set` through CliRunner, checked against the library and the ONNX
file read independently."""
import json
from collections import Counter

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import dlbatch
from dlbatch.cli.app import app
from dlbatch.datasets import read_dl_dataset, write_synthetic_dataset

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_create_takes_classes_size_and_set_values(tmp_path):
    out = tmp_path / "m.onnx"
    invoke("model", "create", "classification", "-o", out, "--backbone", "compact", "--classes", "3:cat,7:dog",
           "--width", 16, "--height", 24, "--channels", 1, "--set", "learning_rate=0.05", "--set", "solver_type=adam",
           "--set", "class_weights=[1, 2.5]")
    model = dlbatch.read_dl_model(out)
    assert model.get_param("class_ids") == [3, 7] and model.get_param("class_names") == ["cat", "dog"]
    assert model.get_param("image_dimensions") == [16, 24, 1]
    assert model.get_param("learning_rate") == 0.05 and model.get_param("solver_type") == "adam"
    assert model.get_param("class_weights") == [1.0, 2.5]


def test_create_takes_the_classes_of_a_dataset(tmp_path):
    path = write_synthetic_dataset("classification", tmp_path / "data", num_samples=6, width=16, height=16)
    out = tmp_path / "m.onnx"
    result = invoke("model", "create", "classification", "-o", out, "--dataset", path, "--width", 16, "--height", 16)
    ds = read_dl_dataset(path)
    model = dlbatch.read_dl_model(out)
    assert model.get_param("class_ids") == list(ds.class_ids) and model.get_param("class_names") == list(ds.class_names)
    assert f"{len(ds.class_ids)} classes from" in result.output
    # --classes picks a subset and keeps the dataset's names for those ids
    invoke("model", "create", "classification", "-o", out, "--dataset", path, "--classes", "0,2", "--width", 16,
           "--height", 16)
    model = dlbatch.read_dl_model(out)
    assert model.get_param("class_names") == [ds.class_names[0], ds.class_names[2]]


def test_detection_from_a_dataset_gets_instance_type_and_anchors_fitted_to_its_boxes(tmp_path):
    path = write_synthetic_dataset("detection", tmp_path / "data", num_samples=10, width=48, height=40,
                                   instance_type="rectangle2", seed=3)
    out = tmp_path / "d.onnx"
    invoke("model", "create", "detection", "-o", out, "--dataset", path, "--width", 32, "--height", 32,
           "--backbone", "compact", "--set", "capacity=low")
    model = dlbatch.read_dl_model(out)
    assert model.get_param("instance_type") == "rectangle2"
    # the reference: the same samples prepared by the model itself, then the library's suggestion
    ds = read_dl_dataset(path)
    samples = dlbatch.preprocess_dl_samples([ds[i] for i in range(len(ds))], model)
    expected = dlbatch.detection_params_from_samples(samples, 32, 32, instance_type="rectangle2",
                                                     lowest_level=2, highest_level=5)
    for key in ("min_level", "max_level", "anchor_num_subscales"):
        assert model.get_param(key) == expected[key], key
    np.testing.assert_allclose(model.get_param("anchor_aspect_ratios"), expected["anchor_aspect_ratios"])
    np.testing.assert_allclose(model.get_param("anchor_angles"), expected["anchor_angles"])
    # --set wins over a suggestion; --no-suggest-anchors keeps the defaults
    invoke("model", "create", "detection", "-o", out, "--dataset", path, "--width", 32, "--height", 32,
           "--backbone", "compact", "--set", "capacity=low", "--set", "anchor_num_subscales=2")
    assert dlbatch.read_dl_model(out).get_param("anchor_num_subscales") == 2
    invoke("model", "create", "detection", "-o", out, "--dataset", path, "--width", 32, "--height", 32,
           "--backbone", "compact", "--set", "capacity=low", "--no-suggest-anchors")
    plain = dlbatch.create_dl_model("detection", backbone="compact", class_ids=[1, 2, 3], capacity="low",
                                    image_dimensions=[32, 32, 3], instance_type="rectangle2")
    for key in ("min_level", "max_level", "anchor_num_subscales", "anchor_aspect_ratios", "anchor_angles"):
        assert dlbatch.read_dl_model(out).get_param(key) == plain.get_param(key), key


def test_a_dataset_of_another_type_is_refused(tmp_path):
    path = write_synthetic_dataset("segmentation", tmp_path / "data", num_samples=2, width=32, height=32)
    result = runner.invoke(app, ["model", "create", "classification", "-o", str(tmp_path / "m.onnx"),
                                 "--dataset", str(path)])
    assert result.exit_code == 2 and "segmentation dataset" in result.stderr


def test_info_reports_parameters_ops_opset_and_steps(tmp_path):
    out = tmp_path / "m.onnx"
    invoke("model", "create", "classification", "-o", out, "--num-classes", 3, "--width", 8, "--height", 8,
           "--backbone", "compact")
    facts = json.loads(invoke("model", "info", out, "--json").output)
    proto = onnx.load(str(out))
    assert facts["ops"] == dict(Counter(n.op_type for n in proto.graph.node))
    assert facts["num_nodes"] == len(proto.graph.node)
    assert facts["opset"] == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    model = dlbatch.read_dl_model(out)
    assert facts["num_trainable_params"] == sum(int(np.prod(v.shape)) for k, v in model.state_dict().items()
                                                if k in model.graph.trainable)
    assert facts["parameters"]["learning_rate"] == model.get_param("learning_rate")
    assert facts["steps_trained"] == 0 and facts["type"] == "classification" and facts["backbone"] == "compact"
    text = invoke("model", "info", out).output
    assert "steps_trained" in text and "parameters" in text and "Conv x" in text


def test_set_rewrites_the_file_and_refuses_bad_values_leaving_it_unchanged(tmp_path):
    out = tmp_path / "m.onnx"
    invoke("model", "create", "detection", "-o", out, "--num-classes", 2, "--width", 32, "--height", 32,
           "--backbone", "compact", "--set", "capacity=low")
    result = invoke("model", "set", out, "learning_rate=0.02", "min_confidence=0.25", "solver_type=adam")
    model = dlbatch.read_dl_model(out)
    assert (model.get_param("learning_rate"), model.get_param("min_confidence"), model.get_param("solver_type")) \
        == (0.02, 0.25, "adam")
    assert "wrote" in result.output
    before = out.read_bytes()
    for args, needle in ((["min_level=3"], "fixed"), (["backend=torch"], "runtime"), (["learning_rate=-1"], "> 0"),
                         (["nope=1"], "nope"), (["learning_rate"], "KEY=VALUE")):
        result = runner.invoke(app, ["model", "set", str(out), *args])
        assert result.exit_code == 2 and needle in result.stderr, (args, result.output)
        assert out.read_bytes() == before
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


@pytest.mark.parametrize("extra, needle", [(["--classes", "1,2", "--num-classes", "2"], "not both")])
def test_conflicting_class_options(tmp_path, extra, needle):
    result = runner.invoke(app, ["model", "create", "classification", "-o", str(tmp_path / "m.onnx"), *extra])
    assert result.exit_code == 2 and needle in result.stderr

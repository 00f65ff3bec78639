"""Segmentation and detection build their networks through dlbatch.models.network.

The multi-scale layers (upsample, add, concat, shared convolution weights, per-location
flattening) compute what torch computes (float64) when onnxruntime runs the finished graph; the
segmentation decoder and the detection pyramid read the backbone that `build_backbone` gives
for the same seed at the strides the model types promise; a classifier file whose tensor names
clash with the layers a model type adds is refused as a file problem."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch.core.errors import DLModelFileError, DLParamError
from dlbatch.core.onnx_export import graph_to_proto
from dlbatch.models.network import build_backbone

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
F = torch.nn.functional
nn = torch.nn

# the backbone strides each model type reads (SPEC: the decoder at least three levels)
SEGMENTATION_STRIDES = {"compact": (1, 2, 4), "resnet18": (4, 8, 16, 32)}


def run_onnx(graph, values, inputs):
    model = onnx.helper.make_model(graph_to_proto(graph, values),
                                   opset_imports=[onnx.helper.make_opsetid("", graph.opset)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [v.name for v in graph.outputs]
    return dict(zip(names, session.run(names, inputs)))


def test_multiscale_layers_compute_what_torch_computes():
    net = build_backbone("compact", [12, 8, 2], np.random.default_rng(3))
    s2, s4 = net.features.at(2), net.features.at(4)
    p = net.conv(s4.name, 5, 1, "p", bias=True)
    q = net.conv(s2.name, 5, 1, "q")
    r = net.conv(s4.name, 10, 1, "r")
    merged = net.add(net.upsample(p, 2, "lin"), q, "sum")
    cat = net.concat([merged, net.upsample(p, 2, "near", mode="nearest")], "cat")
    shared = net.conv_weights(10, 6, 3, "shared", std=0.2, bias=0.5)
    a, b = net.conv_with(cat, shared, "a"), net.conv_with(r, shared, "b")
    rows = net.concat([net.flatten_locations(a, 3, "a.rows"), net.flatten_locations(b, 3, "b.rows")], "rows",
                      output="all_rows")
    graph, values = net.finish([rows, p, q, r])
    assert [(v.name, v.shape) for v in graph.outputs][0] == ("all_rows", (None, None, 3))
    assert net.channels(cat) == 10 and net.channels(rows) == 3
    x = np.random.default_rng(0).normal(size=(2, 2, 8, 12)).astype(np.float32)
    got = run_onnx(graph, values, {net.input: x})

    t = {k: torch.from_numpy(got[k]).double() for k in (p, q, r)}
    weight, bias = (torch.from_numpy(values[k]).double() for k in (shared.weight, shared.bias))
    lin = F.interpolate(t[p], scale_factor=2, mode="bilinear", align_corners=False)
    near = F.interpolate(t[p], scale_factor=2, mode="nearest")
    ya = F.conv2d(torch.cat([lin + t[q], near], 1), weight, bias, padding=1)
    yb = F.conv2d(t[r], weight, bias, padding=1)
    expected = torch.cat([y.permute(0, 2, 3, 1).reshape(2, -1, 3) for y in (ya, yb)], 1)
    assert got["all_rows"].shape == (2, (4 * 6 + 2 * 3) * 2, 3)
    np.testing.assert_allclose(got["all_rows"], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert float(values[shared.bias][0]) == 0.5 and values[shared.weight].shape == (6, 10, 3, 3)


def test_layer_mistakes_are_refused():
    net = build_backbone("compact", [8, 8, 1], 0)
    s1, s2 = net.features.at(1), net.features.at(2)
    with pytest.raises(DLParamError, match="same channels"):
        net.add(s1.name, s2.name, "bad")
    with pytest.raises(DLParamError, match="integer factor"):
        net.upsample(s2.name, 1.5, "bad")
    with pytest.raises(DLParamError, match="multiple of per_location"):
        net.flatten_locations(s2.name, 5, "bad")
    shared = net.conv_weights(32, 4, 3, "shared", std=0.01)
    with pytest.raises(DLParamError, match="64 channels"):
        net.conv_with(s2.name, shared, "bad")
    with pytest.raises(DLParamError, match=r"already has 'shared\.(weight|bias)'"):
        net.conv_weights(32, 4, 3, "shared", std=0.01)
    flat = net.flatten_locations(s1.name, 4, "rows")
    with pytest.raises(DLParamError, match="concat joins"):
        net.concat([flat, s1.name], "bad")


def backbone_weights_equal(model, net):
    """The model's backbone weights are the API backbone's (same seed, same draws)."""
    graph, values = net.finish([net.features.last.name])
    shared = [k for k in graph.initializer_names() if k in model.values]
    assert shared, "the model holds none of the backbone's weights"
    for k in shared:
        np.testing.assert_array_equal(np.asarray(model.values[k]), values[k], err_msg=k)


def reader(graph, node_name):
    return next(n for n in graph.nodes if n.name == node_name).inputs[0]


@pytest.mark.parametrize("backbone", sorted(SEGMENTATION_STRIDES))
def test_segmentation_decoder_reads_the_api_backbone_at_its_strides(backbone):
    hp = {"image_width": 64, "image_height": 64, "image_num_channels": 3}
    model = dlbatch.create_dl_model("segmentation", backbone=backbone, class_ids=[1, 2], seed=5,
                                    image_dimensions=[64, 64, 3], backend="numpy")
    net = build_backbone(backbone, hp, 5)
    strides = SEGMENTATION_STRIDES[backbone]
    for s in strides:
        assert reader(model.graph, f"decoder.lateral{s}") == net.features.at(s).name
    assert model.meta["size_multiple"] == strides[-1]
    backbone_weights_equal(model, net)


@pytest.mark.parametrize("backbone, levels", [("compact", (1, 2)), ("resnet18", (4, 5))])
@pytest.mark.parametrize("instance_type", ["rectangle1", "rectangle2"])
def test_detection_pyramid_reads_the_api_backbone_at_its_levels(backbone, levels, instance_type):
    hp = {"image_width": 64, "image_height": 64, "image_num_channels": 3}
    model = dlbatch.create_dl_model("detection", backbone=backbone, class_ids=[1, 2], seed=5, capacity="low",
                                    image_dimensions=[64, 64, 3], backend="numpy", instance_type=instance_type,
                                    min_level=levels[0], max_level=levels[1] + 1)
    net = build_backbone(backbone, hp, 5)
    for level in levels:
        assert reader(model.graph, f"fpn.lateral{level}") == net.features.at(2 ** level).name
    # the level past the backbone's reach is a stride-2 convolution of the deepest pyramid map
    assert reader(model.graph, f"fpn.extra{levels[1] + 1}") == f"fpn.out{levels[1]}"
    backbone_weights_equal(model, net)


class Classifier(nn.Module):
    """Four stride-2 conv-ReLU stages (strides 2..16) and a linear head."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 3
        for cout in (8, 8, 16, 16):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 3)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


@pytest.fixture(scope="module")
def classifier_proto(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "clf.onnx"
    torch.manual_seed(0)
    torch.onnx.export(Classifier().eval(), torch.zeros(1, 3, 32, 32), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["scores"],
                      dynamic_axes={"input": {0: "n"}, "scores": {0: "n"}})
    return onnx.load(str(path))


def renamed(proto, new_name, path):
    """The classifier with its first convolution's output renamed to `new_name`."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    old = next(n for n in proto.graph.node if n.op_type == "Conv").output[0]
    for n in proto.graph.node:
        n.input[:] = [new_name if i == old else i for i in n.input]
        n.output[:] = [new_name if o == old else o for o in n.output]
    for vi in proto.graph.value_info:
        if vi.name == old:
            vi.name = new_name
    onnx.save(proto, str(path))
    return str(path)


def test_a_file_backbone_works_and_its_clashing_names_are_refused(classifier_proto, tmp_path):
    dims = dict(class_ids=[1, 2], image_dimensions=[32, 32, 3], backend="numpy", seed=1)
    plain = renamed(classifier_proto, "stem", tmp_path / "plain.onnx")
    seg = dlbatch.create_dl_model("segmentation", backbone=plain, **dims)
    det = dlbatch.create_dl_model("detection", backbone=plain, capacity="low", min_level=2, max_level=5, **dims)
    assert seg.meta["size_multiple"] == 16 and reader(det.graph, "fpn.extra5") == "fpn.out4"
    assert seg.graph.opset == det.graph.opset == 17
    # segmentation reserves every "decoder." name; detection those its layers add
    with pytest.raises(DLModelFileError, match="rename them in the network"):
        dlbatch.create_dl_model("segmentation", backbone=renamed(classifier_proto, "decoder.mine", tmp_path / "s.onnx"),
                                **dims)
    with pytest.raises(DLModelFileError, match="already has a tensor or weight 'fpn.lateral2'"):
        dlbatch.create_dl_model("detection", backbone=renamed(classifier_proto, "fpn.lateral2", tmp_path / "d.onnx"),
                                capacity="low", min_level=2, max_level=4, **dims)

"""The backbone reader: a classifier read from ONNX, cut before its head and tapped at strides
4, 8, 16 and 32.

The expected feature maps come from the torch networks themselves (forward hooks on the stage
modules) and the cut graph runs on onnx's reference evaluator, so neither side of a
comparison is computed by the code under test.
"""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

import dlbatch
from dlbatch.core.errors import DLModelFileError, DLParamError
from dlbatch.core.onnx_backbone import Backbone, backbone_from_imported, cut_backbone, find_feature_maps
from dlbatch.core.onnx_export import graph_to_proto
from dlbatch.core.onnx_import import Imported, import_graph, real_inputs

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

C = 3
STRIDES = (4, 8, 16, 32)


# -- torch networks -------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """torchvision's ResNet basic block."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc(global pool(x))): a global pool inside the main path, not a head."""

    def __init__(self, c: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 4, 1)
        self.fc2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


def _stage(cin: int, cout: int, down: str) -> nn.Module:
    if down == "conv":  # 3x3/2 with padding 1: sizes round up
        return nn.Sequential(BasicBlock(cin, cout, 2), BasicBlock(cout, cout))
    return nn.Sequential(nn.MaxPool2d(2), BasicBlock(cin, cout))  # 2x2/2 pool: sizes round down


class ResNetLike(nn.Module):
    """A small torchvision-style ResNet: stem to stride 4, `stages` stages (the first keeps the
    stride, each further one halves it), optional tail at the last stride, then the classifier
    head (adaptive average pool, flatten, linear).

    stem "torchvision": 7x7/2 conv + 3x3/2 max pool, both padded (ceil rounding);
    stem "pool": a valid 3x3 conv (shrinks by 2 without downsampling) and two 2x2 max pools
    (floor rounding). down "conv"/"pool": strided conv blocks or 2x2 max pools."""

    def __init__(self, stem: str = "torchvision", down: str = "conv", stages: int = 4, tail: str = "none",
                 widths=(8, 16, 24, 32), classes: int = 5):
        super().__init__()
        w0 = widths[0]
        if stem == "torchvision":
            self.stem = nn.Sequential(nn.Conv2d(C, w0, 7, 2, 3, bias=False), nn.BatchNorm2d(w0), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(C, w0, 3, 1, 0, bias=False), nn.BatchNorm2d(w0), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(w0, w0, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
        layers = [nn.Sequential(BasicBlock(w0, w0), BasicBlock(w0, w0))]
        for i in range(1, stages):
            layers.append(_stage(widths[i - 1], widths[i], down))
        self.layers = nn.ModuleList(layers)
        last = widths[stages - 1]
        self.tail = None
        if tail == "conv":  # a 1x1 conv-BN-ReLU at the last stride (as MobileNetV2's last layer)
            self.tail = nn.Sequential(nn.Conv2d(last, 2 * last, 1, bias=False), nn.BatchNorm2d(2 * last), nn.ReLU())
            last *= 2
        elif tail == "se":
            self.tail = nn.Sequential(BasicBlock(last, last), SqueezeExcite(last))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(last, classes)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        if self.tail is not None:
            x = self.tail(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def stage_modules(self) -> dict[int, nn.Module]:
        """stride -> the module whose output is the last map at that stride."""
        out = {4 * 2 ** i: layer for i, layer in enumerate(self.layers)}
        if self.tail is not None:
            out[max(out)] = self.tail
        return out


def make_net(seed: int = 0, **kw) -> ResNetLike:
    torch.manual_seed(seed)
    net = ResNetLike(**kw)
    with torch.no_grad():  # trained-looking batch norm, so a wrong tap cannot look right by accident
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def export(net: nn.Module, height: int, width: int, opset: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, C, height, width),), buf, opset_version=opset, dynamo=False,
                          do_constant_folding=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())


def stage_outputs(net: ResNetLike, x: torch.Tensor) -> dict[int, np.ndarray]:
    """The torch network's own feature maps per stride, taken with forward hooks."""
    got: dict[int, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, s=s: got.__setitem__(s, out.detach().numpy()))
             for s, m in net.stage_modules().items()]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return got


def import_torch(net, height: int, width: int, opset: int = 17) -> Imported:
    return import_graph(export(net, height, width, opset), {"input": (None, C, height, width)}, "net.onnx")


class BatchNormalization(OpRun):
    """Inference-mode batch norm for the reference evaluator (which finds it by class name):
    its own BatchNormalization-9 always uses batch statistics, because its momentum attribute
    gets the schema default. These graphs run in inference mode at every opset."""

    op_domain = ""

    def _run(self, x, scale, bias, mean, var, epsilon=1e-5, momentum=None, training_mode=None):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + epsilon) * scale.reshape(shape)
        return ((y + bias.reshape(shape)).astype(x.dtype),)


def run_cut(backbone: Backbone, x: np.ndarray) -> dict[int, np.ndarray]:
    """Run the cut graph on onnx's reference evaluator (after onnx's checker accepts it)."""
    g = backbone.graph
    proto = helper.make_model(graph_to_proto(g, backbone.values), opset_imports=[helper.make_opsetid("", g.opset)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    names = [o.name for o in g.outputs]
    results = ReferenceEvaluator(proto, new_ops=[BatchNormalization]).run(None, {backbone.input_name: x})
    by_name = dict(zip(names, results))
    return {s: by_name[t] for s, t in backbone.taps.items()}


def assert_same_maps(backbone: Backbone, net: ResNetLike, height: int, width: int, seed: int = 1) -> None:
    x = torch.randn(2, C, height, width, generator=torch.Generator().manual_seed(seed))
    want = stage_outputs(net, x)
    got = run_cut(backbone, x.numpy())
    assert sorted(got) == sorted(want)
    for s in want:
        assert got[s].shape == want[s].shape, s
        np.testing.assert_allclose(got[s], want[s], rtol=1e-4, atol=1e-5, err_msg=f"stride {s}")
        assert backbone.channels[s] == want[s].shape[1]


# -- foreign ResNets ------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [13, 17])
def test_torch_resnet_taps_are_the_stage_outputs(opset):
    net = make_net(1)
    imported = import_torch(net, 64, 64, opset)
    bb = backbone_from_imported(imported, "input", 64, 64, STRIDES, "net.onnx")
    assert sorted(bb.taps) == list(STRIDES)
    assert [o.name for o in bb.graph.outputs] == [bb.taps[s] for s in STRIDES]
    assert all(o.shape[0] is None and o.shape[2:] == (None, None) for o in bb.graph.outputs)
    assert [o.shape[1] for o in bb.graph.outputs] == [8, 16, 24, 32]
    assert not {"Gemm", "Flatten", "GlobalAveragePool", "MatMul"} & bb.graph.op_types()
    assert_same_maps(bb, net, 64, 64)


@pytest.mark.parametrize("height,width", [(100, 75), (75, 100), (33, 47), (16, 16)])
@pytest.mark.parametrize("stem,down,smallest", [("torchvision", "conv", 1), ("pool", "pool", 34),
                                                ("torchvision", "pool", 29)], ids=["ceil", "floor", "mixed"])
def test_odd_and_small_images_under_both_rounding_conventions(height, width, stem, down, smallest):
    """Odd sizes round up (padded strided convs), down (2x2 pools, valid convs) or both; on a
    16x16 image the stride-16 and stride-32 maps are both 1x1. Sizes alone cannot tell them."""
    if min(height, width) < smallest:
        pytest.skip(f"below {smallest} pixels, rounding down reaches 0 pixels before stride 32")
    net = make_net(2, stem=stem, down=down)
    bb = backbone_from_imported(import_torch(net, height, width), "input", height, width)
    assert_same_maps(bb, net, height, width)


@pytest.mark.parametrize("tail", ["conv", "se"])
def test_the_last_map_at_a_stride_is_after_a_non_downsampling_tail(tail):
    """A 1x1 conv tail, or a block with squeeze-and-excitation (whose global pool is not the
    head), still belongs to stride 32; the stride-32 tap is the tail's output."""
    net = make_net(3, tail=tail)
    bb = backbone_from_imported(import_torch(net, 64, 48), "input", 64, 48)
    assert_same_maps(bb, net, 64, 48)
    if tail == "se":
        assert "GlobalAveragePool" in bb.graph.op_types()  # the SE gate stays, the head goes
    assert "Gemm" not in bb.graph.op_types()


def test_a_network_without_stride_32_names_what_is_missing():
    net = make_net(4, stages=3)
    imported = import_torch(net, 64, 64)
    found = find_feature_maps(imported.graph, imported.shapes, "input", 64, 64)
    assert sorted(found) == [4, 8, 16]
    with pytest.raises(DLModelFileError) as err:
        backbone_from_imported(imported, "input", 64, 64, STRIDES, "net.onnx")
    msg = str(err.value)
    x = torch.zeros(1, C, 64, 64)
    deepest = stage_outputs(net, x)[16].shape  # torch's own stride-16 map
    assert "net.onnx" in msg and "stride 32" in msg
    assert f"stride 16 ({deepest[2]}x{deepest[3]}, {deepest[1]} channels)" in msg
    assert "downsamples by a factor of 32" in msg and "4, 8, 16" in msg
    bb = backbone_from_imported(imported, "input", 64, 64, (4, 8, 16))  # the strides it has work
    assert_same_maps(bb, net, 64, 64)


def test_cut_keeps_only_needed_initializers_and_leaves_the_input_alone():
    net = make_net(5, tail="se")
    imported = import_torch(net, 64, 64)
    graph_before = copy.deepcopy(imported.graph)
    values_before = {k: v.copy() for k, v in imported.values.items()}
    bb = backbone_from_imported(imported, "input", 64, 64)

    params = {n for n, _ in net.named_parameters()}
    assert set(bb.graph.trainable) == {n for n in params if not n.startswith("fc.")}
    assert set(bb.graph.statistics) == {n for n, _ in net.named_buffers() if "running" in n}
    assert not {"fc.weight", "fc.bias"} & set(bb.values)
    read = {i for n in bb.graph.nodes for i in n.inputs}
    assert set(bb.values) == set(bb.graph.initializer_names()) == read & set(imported.values)
    assert len(bb.graph.initializer_names()) == len(set(bb.graph.initializer_names()))
    assert [vi.name for vi in bb.graph.inputs] == ["input"]

    assert repr(imported.graph) == repr(graph_before)  # nothing of the input graph changed
    assert imported.values.keys() == values_before.keys()
    for k, v in values_before.items():
        np.testing.assert_array_equal(imported.values[k], v)
    assert all(a is not b for a, b in zip(bb.graph.nodes, imported.graph.nodes))


def test_cut_backbone_with_given_taps():
    """cut_backbone on its own: any tensors as taps; without shapes the channels stay open."""
    net = make_net(6)
    imported = import_torch(net, 64, 64)
    taps = find_feature_maps(imported.graph, imported.shapes, "input", 64, 64, (8,))
    graph, values = cut_backbone(imported.graph, imported.values, taps)
    assert [o.name for o in graph.outputs] == [taps[8]] and graph.outputs[0].shape == (None, None, None, None)
    assert any(k.startswith("layers.1.") for k in values)  # the stride-8 stage is in, the rest out
    assert not any(k.startswith(("layers.2.", "layers.3.", "fc.")) for k in values)
    with pytest.raises(DLModelFileError, match="not produced"):
        cut_backbone(imported.graph, imported.values, {8: "no_such_tensor"})


# -- dlbatch's own backbones ------------------------------------------------------------------------
def _dlbatch_file(tmp_path, backbone: str) -> tuple[onnx.ModelProto, str]:
    model = dlbatch.create_dl_model("classification", backbone=backbone, num_classes=3, image_dimensions=[64, 64, 3])
    path = tmp_path / f"{backbone}.onnx"
    dlbatch.write_dl_model(model, path)
    proto = onnx.load(str(path))
    return proto, real_inputs(proto.graph)[0].name


def test_dlbatch_resnet18_is_tapped_after_each_stage(tmp_path):
    proto, name = _dlbatch_file(tmp_path, "resnet18")
    imported = import_graph(proto, {name: (None, 3, 64, 64)}, "resnet18.onnx")
    bb = backbone_from_imported(imported, name, 64, 64)
    # the builder names the last ReLU of stage k "layer{k}.1.relu2"; ResNet-18 widths 64..512
    assert bb.taps == {4: "layer1.1.relu2", 8: "layer2.1.relu2", 16: "layer3.1.relu2", 32: "layer4.1.relu2"}
    assert bb.channels == {4: 64, 8: 128, 16: 256, 32: 512}
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    full = ReferenceEvaluator(proto).run(list(bb.taps.values()), {name: x})
    for (s, got), want in zip(run_cut(bb, x).items(), full):
        assert got.shape == (1, bb.channels[s], 64 // s, 64 // s)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dlbatch_compact_reaches_stride_4_only(tmp_path):
    proto, name = _dlbatch_file(tmp_path, "compact")
    imported = import_graph(proto, {name: (None, 3, 64, 64)}, "compact.onnx")
    assert sorted(find_feature_maps(imported.graph, imported.shapes, name, 64, 64)) == [4]
    with pytest.raises(DLModelFileError) as err:
        backbone_from_imported(imported, name, 64, 64, STRIDES, "compact.onnx")
    msg = str(err.value)
    assert "stride 8, 16, 32" in msg and "stride 4 (16x16, 128 channels)" in msg
    assert "ask only for strides it has (2, 4)" in msg
    assert backbone_from_imported(imported, name, 64, 64, (4,)).channels == {4: 128}


# -- what cannot work -------------------------------------------------------------------------------
def test_unknown_shapes_are_reported():
    imported = import_torch(make_net(7), 64, 64)
    no_shapes = Imported(imported.graph, imported.values, {"input": (None, C, 64, 64)})
    with pytest.raises(DLModelFileError, match="shapes of the network's tensors are unknown"):
        backbone_from_imported(no_shapes, "input", 64, 64, STRIDES, "net.onnx")
    with pytest.raises(DLModelFileError, match="image input 'input' is unknown or not N x C x H x W"):
        backbone_from_imported(Imported(imported.graph, imported.values, {}), "input", 64, 64)


def test_shapes_for_another_image_size_are_rejected():
    imported = import_torch(make_net(8), 64, 64)
    with pytest.raises(DLParamError, match="not for the 48x32"):
        find_feature_maps(imported.graph, imported.shapes, "input", 32, 48)

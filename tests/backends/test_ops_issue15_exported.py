"""The issue-15 kernels on graphs that torch.onnx.export really writes: small ConvNeXt-style,
vision-transformer, GroupNorm and hand-written attention networks (exact and tanh GELU),
exported with the legacy exporter (opset 13 and 17) and the default (dynamo) exporter, read
with the importer's constant folding (core.onnx_import.import_graph) and run, in float64, on
both backends:

* the forward equals the PyTorch module's (eval mode; these networks have no batch norm) up
  to the float32 rounding of the constants in the file;
* the numpy and torch backends give the same outputs and gradients (1e-9) for every float
  initializer (all made trainable here, whatever roles the importer would give them), and
  those that keep a PyTorch parameter's name equal torch autograd of the module.

Also the raw graphs of free-batch exports (only Constant nodes folded): the batch-dependent
shape computations (class token expanded to Shape(x)[0], attention reshapes) run on the
kernels at batch sizes 1, 3 and 5.

The importer's own behaviour (roles, batch rewriting, error lists) is tested elsewhere; this
module only needs the graphs.
"""
from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
nn = torch.nn

from dlbatch.backends.numpy_cpu.backend import NumpyBackend  # noqa: E402
from dlbatch.backends.torch.backend import TorchBackend  # noqa: E402
from dlbatch.core.graph import Graph, ValueInfo  # noqa: E402
from dlbatch.core.onnx_import import import_graph  # noqa: E402
from dlbatch.core.plugins import manager  # noqa: E402

BACKENDS = {"numpy": NumpyBackend(), "torch": TorchBackend()}


class LayerNorm2d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlockNet(nn.Module):
    """Patchify stem, channels-last LayerNorm, depthwise 7x7, MLP with exact GELU, layer scale."""

    def __init__(self):
        super().__init__()
        self.stem, self.norm0 = nn.Conv2d(3, 8, 4, 4), LayerNorm2d(8)
        self.dw, self.ln = nn.Conv2d(8, 8, 7, padding=3, groups=8), nn.LayerNorm(8)
        self.pw1, self.act, self.pw2 = nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8)
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.head_ln, self.head = nn.LayerNorm(8), nn.Linear(8, 5)

    def forward(self, x):
        x = self.norm0(self.stem(x))
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.ln(y)))) * self.gamma
        x = x + y.permute(0, 3, 1, 2)
        return self.head(self.head_ln(x.mean((-2, -1))))


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm encoder layer, the
    class token's features into the head."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, 16) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, 5, 16) * 0.1)
        self.enc = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, activation="gelu",
                                              norm_first=True)
        self.ln, self.head = nn.LayerNorm(16), nn.Linear(16, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.ln(self.enc(x))[:, 0])


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.g1 = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(4, 8)
        self.c2, self.pool = nn.Conv2d(8, 5, 1), nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.c2(torch.relu(self.g1(self.c1(x))))).flatten(1)


class AttentionNet(nn.Module):
    """Hand-written multi-head attention (qkv split, scaled scores, softmax) and tanh GELU."""

    def __init__(self):
        super().__init__()
        self.patch, self.qkv = nn.Conv2d(3, 16, 8, 8), nn.Linear(16, 48)
        self.out, self.act, self.head = nn.Linear(16, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 5)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1) * 8 ** -0.5).softmax(-1)
        y = (a @ v).transpose(1, 2).reshape(n, t, d)
        return self.head(self.act(self.out(y)).mean(1))


NETS = {"convnext": ConvNeXtBlockNet, "vit": TinyViT, "groupnorm": GroupNormNet, "attention": AttentionNet}
STYLES = {"legacy13": dict(dynamo=False, opset_version=13), "legacy17": dict(dynamo=False, opset_version=17),
          "dynamo": dict(dynamo=True)}
BATCH = 2
SIZE = 16
COMBOS = [(net, style, dyn) for net in NETS for style in STYLES for dyn in (False, True)
          if not (net == "vit" and style == "legacy13")]  # scaled_dot_product_attention needs opset 14
# the exported files hold float32 constants (epsilon, sqrt(2) of the GELU, 1/sqrt(d) of the
# attention): the float64 graph differs from the float64 module by their rounding, ~1e-8
MODULE_TOL = 1e-6


def export(module, style, dynamic):
    kw = dict(STYLES[style], input_names=["x"])
    if dynamic:
        if kw["dynamo"]:
            kw["dynamic_shapes"] = ({0: torch.export.Dim("n", min=2, max=64)},)
        else:
            kw["dynamic_axes"] = {"x": {0: "n"}}
    f = io.BytesIO()
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.randn(BATCH, 3, SIZE, SIZE),), f, **kw)
    finally:
        logging.disable(logging.NOTSET)
    return onnx.load_from_string(f.getvalue())


def all_float_trainable(graph: Graph, values: dict) -> Graph:
    floats = [n for n, v in values.items() if v.dtype.kind == "f" and v.ndim >= 1 and v.size > 1]
    return Graph(graph.nodes, graph.inputs, graph.outputs, trainable=floats, statistics=[],
                 constants=[n for n in values if n not in floats], opset=graph.opset)


IDS = [f"{a}-{b}-{'dyn' if c else 'fixed'}" for a, b, c in COMBOS]


@pytest.mark.parametrize("net,style,dynamic", COMBOS, ids=IDS)
def test_exported_network_runs_and_trains_like_pytorch_on_both_backends(net, style, dynamic):
    check_exported(net, style, dynamic, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("net,style,dynamic", COMBOS, ids=IDS)
def test_exported_network_on_cuda(net, style, dynamic):
    check_exported(net, style, dynamic, "cuda")


def check_exported(net, style, dynamic, device):
    """numpy on the CPU, torch on `device`."""
    torch.manual_seed(0)
    module = NETS[net]().eval()
    with torch.no_grad():  # exporters merge initializers of equal value (fresh LayerNorm ones and zeros)
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    proto = export(module, style, dynamic)
    imp = import_graph(proto, {"x": (None if dynamic else BATCH, 3, SIZE, SIZE)}, "test", roles=False)
    graph = all_float_trainable(imp.graph, imp.values)
    values = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in imp.values.items()}
    module = module.double()
    x = np.random.default_rng(1).standard_normal((BATCH, 3, SIZE, SIZE))
    tx = torch.from_numpy(x)
    ty = module(tx)
    r = np.random.default_rng(2).standard_normal(tuple(ty.shape))
    (ty * torch.from_numpy(r)).sum().backward()
    expect_y = ty.detach().numpy()
    params = dict(module.named_parameters())

    out_name = graph.outputs[0].name
    grads, outs = {}, {}
    for name, backend in BACKENDS.items():
        dev = device if name == "torch" else "cpu"
        prog = backend.compile(graph, manager.kernels(name), device=dev, dtype="float64")
        res = prog.forward({k: backend.asarray(v, device=dev) for k, v in values.items()},
                           {graph.inputs[0].name: backend.asarray(x, device=dev)}, training=True)
        y = backend.to_numpy(res.outputs[out_name])
        np.testing.assert_allclose(y, expect_y, rtol=MODULE_TOL, atol=MODULE_TOL, err_msg=f"{name} forward")
        outs[name] = y
        g = prog.backward(res.tape, {out_name: backend.asarray(r, device=dev)})
        grads[name] = {k: backend.to_numpy(v) for k, v in g.items()}
    np.testing.assert_allclose(outs["numpy"], outs["torch"], rtol=1e-12, atol=1e-13)
    assert set(grads["numpy"]) == set(grads["torch"]) and grads["numpy"]
    matched = 0
    for k, gn in grads["numpy"].items():
        np.testing.assert_allclose(gn, grads["torch"][k], rtol=1e-9, atol=1e-11, err_msg=f"gradient of {k}")
        p = params.get(k)
        if p is not None and tuple(p.shape) == gn.shape:
            np.testing.assert_allclose(gn, p.grad.numpy(), rtol=MODULE_TOL, atol=MODULE_TOL * np.abs(gn).max(),
                                       err_msg=f"autograd of {k}")
            matched += 1
    assert matched >= 2, sorted(grads["numpy"])


def raw_graph(proto):
    """The exported graph as it is, only `Constant` nodes turned into constants: the shape
    computations on the batch size (Shape -> Gather -> ... -> Expand of the class token) stay
    in the graph and run on the kernels."""
    from onnx import numpy_helper

    from dlbatch.core.onnx_import import initializer_arrays, nodes_from_proto

    values = initializer_arrays(proto.graph, "test")
    kept = []
    for node in proto.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        else:
            kept.append(node)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    floats = [k for k, v in values.items() if v.dtype.kind == "f" and v.size > 1]
    graph = Graph(nodes_from_proto(kept, "test"), [ValueInfo("x", (None, 3, SIZE, SIZE))],
                  [ValueInfo(proto.graph.output[0].name, ())], trainable=floats,
                  constants=[k for k in values if k not in floats], opset=opset)
    return graph, values


RAW = [("vit", "legacy17"), ("vit", "dynamo"), ("attention", "legacy13")]


@pytest.mark.parametrize("net,style", RAW, ids=[f"{a}-{b}" for a, b in RAW])
def test_batch_dependent_shape_subgraphs_run_at_any_batch_size(net, style):
    """With a free batch, the class token's Expand and the attention reshapes take the batch
    size from Shape at run time: both backends agree with the module at batch sizes 1, 3, 5."""
    torch.manual_seed(0)
    module = NETS[net]().eval()
    graph, values = raw_graph(export(module, style, True))
    assert "Shape" in {n.op_type for n in graph.nodes}
    module = module.double()
    out = graph.outputs[0].name
    for batch in (1, 3, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE))
        expect = module(torch.from_numpy(x)).detach().numpy()
        got = {}
        for name, backend in BACKENDS.items():
            prog = backend.compile(graph, manager.kernels(name), device="cpu", dtype="float64")
            res = prog.forward({k: backend.asarray(v.astype(np.float64) if v.dtype.kind == "f" else v, device="cpu")
                                for k, v in values.items()}, {"x": backend.asarray(x, device="cpu")}, training=True)
            grads = prog.backward(res.tape, {out: backend.asarray(np.ones(expect.shape), device="cpu")})
            got[name] = backend.to_numpy(res.outputs[out]), {k: backend.to_numpy(v) for k, v in grads.items()}
            np.testing.assert_allclose(got[name][0], expect, rtol=MODULE_TOL, atol=MODULE_TOL)
        assert set(got["numpy"][1]) == set(got["torch"][1])
        for k, g in got["numpy"][1].items():
            np.testing.assert_allclose(g, got["torch"][1][k], rtol=1e-9, atol=1e-11, err_msg=k)

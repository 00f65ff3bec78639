"""Where do CUDA and CPU differ in float64? Runs the torch backend test's small graph on both
devices and prints, per node output (forward) and per trainable (backward), the largest
relative difference. For use on a lent GPU machine (bench/gpu_check.sh calls it)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.backends.test_torch_backend import BACKEND, _flat_width, _grad_graph, _grad_values, kernels  # noqa: E402


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if a.size else 0.0


rng = np.random.default_rng(5)
v, x = _grad_values(rng)
graph = _grad_graph()
v["wf"] = rng.standard_normal((3, _flat_width(graph, v, x))) * 0.5
v["bf"] = rng.standard_normal(3) * 0.1
r = rng.standard_normal((2, 3))
names = [o for n in graph.nodes for o in n.outputs]
fwd, grads = {}, {}
for device in ("cpu", "cuda"):
    prog = BACKEND.compile(graph, kernels(), device=device, dtype="float64")
    vals = {k: BACKEND.asarray(a, device=device) for k, a in v.items()}
    inp = {"x": BACKEND.asarray(x, device=device)}
    res = prog.forward(vals, inp, training=True, wanted=names)
    fwd[device] = {k: BACKEND.to_numpy(t) for k, t in res.outputs.items()}
    res = prog.forward(vals, inp, training=True)
    g = prog.backward(res.tape, {"out": BACKEND.asarray(r, device=device)})
    grads[device] = {k: BACKEND.to_numpy(t) for k, t in g.items()}
for n in graph.nodes:
    for o in n.outputs:
        if o in fwd["cpu"]:
            print(f"forward {n.op_type:20s} {o:6s} rel diff {rel(fwd['cuda'][o], fwd['cpu'][o]):.2e}")
for k in grads["cpu"]:
    print(f"grad    {k:6s} rel diff {rel(grads['cuda'][k], grads['cpu'][k]):.2e}")

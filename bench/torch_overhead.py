"""Overhead of the dlbatch torch backend over a plain hand-written PyTorch training loop.

For each case the same network (built from the dlbatch model's graph and initial weights as an
ordinary nn.Module: torch.fx emits straight-line forward code with nn.Conv2d / nn.BatchNorm2d /
... modules, as one would write by hand), the same batch and the same HALCON-form SGD
(v = mu v - lr g; w = w + v, weight prior on rank >= 2 tensors) run one full training step:
batch to tensor, forward, cross-entropy, backward, update, loss to a Python float. The two
implementations alternate step by step (so drift in machine speed hits both alike); the median
over >= 20 timed steps after warm-up is reported. torch uses 2 threads.

    python bench/torch_overhead.py              # compact 16x3x64x64 and resnet18 8x3x224x224
    python bench/torch_overhead.py --quick      # fewer steps, smaller resnet images (smoke test)
    python bench/torch_overhead.py --profile    # also print where the dlbatch step spends time

Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

import dlbatch

LR, MU, WEIGHT_PRIOR = 0.01, 0.9, 1e-4


# -- the plain PyTorch side ------------------------------------------------------------------------
def build_module(graph, weights: dict, bn_momentum: float = 0.9) -> fx.GraphModule:
    """An nn.Module of the graph (Conv, BatchNormalization, Relu, MaxPool, Add,
    GlobalAveragePool, Flatten, Gemm) with the given weights, as generated straight-line code."""
    root = nn.Module()
    g = fx.Graph()
    env = {v.name: g.placeholder(v.name) for v in graph.inputs}
    for i, node in enumerate(graph.nodes):
        a = node.attrs
        name = f"m{i}"
        x = env[node.inputs[0]]
        if node.op_type == "Conv":
            w = weights[node.inputs[1]]
            pads = a.get("pads", [0, 0, 0, 0])
            m = nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]), tuple(a.get("strides", [1, 1])),
                          (pads[0], pads[1]), groups=a.get("group", 1), bias=len(node.inputs) > 2)
            m.weight.data = torch.tensor(w)
            if len(node.inputs) > 2:
                m.bias.data = torch.tensor(weights[node.inputs[2]])
        elif node.op_type == "BatchNormalization":
            m = nn.BatchNorm2d(weights[node.inputs[1]].shape[0], eps=a.get("epsilon", 1e-5), momentum=1 - bn_momentum)
            m.weight.data, m.bias.data = torch.tensor(weights[node.inputs[1]]), torch.tensor(weights[node.inputs[2]])
            m.running_mean.data = torch.tensor(weights[node.inputs[3]])
            m.running_var.data = torch.tensor(weights[node.inputs[4]])
        elif node.op_type == "Relu":
            m = nn.ReLU()
        elif node.op_type == "MaxPool":
            pads = a.get("pads", [0, 0, 0, 0])
            m = nn.MaxPool2d(tuple(a["kernel_shape"]), tuple(a.get("strides", a["kernel_shape"])), (pads[0], pads[1]))
        elif node.op_type == "GlobalAveragePool":
            m = nn.AdaptiveAvgPool2d(1)
        elif node.op_type == "Flatten":
            m = nn.Flatten(a.get("axis", 1))
        elif node.op_type == "Gemm":
            w = weights[node.inputs[1]]
            assert a.get("transB", 0) == 1 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0
            m = nn.Linear(w.shape[1], w.shape[0])
            m.weight.data, m.bias.data = torch.tensor(w), torch.tensor(weights[node.inputs[2]])
        elif node.op_type == "Add":
            env[node.outputs[0]] = g.call_function(torch.add, (x, env[node.inputs[1]]))
            continue
        else:
            raise NotImplementedError(node.op_type)
        root.add_module(name, m)
        env[node.outputs[0]] = g.call_module(name, (x,))
    g.output(env[graph.outputs[0].name])
    return fx.GraphModule(root, g)


class PlainLoop:
    def __init__(self, module: nn.Module, device: str, class_ids):
        self.net = module.to(device).train()
        self.device = device
        self.params = list(self.net.parameters())
        self.velocity = [torch.zeros_like(p) for p in self.params]
        self.index = {c: i for i, c in enumerate(class_ids)}

    def step(self, samples) -> float:
        # HWC images as an NCHW view: channels_last memory, oneDNN's fast layout on the CPU (the
        # layout step_case's hand-written loop gets too, and that the dlbatch torch backend uses)
        x = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2).to(self.device)
        y = torch.tensor([self.index[s["image_label_id"]] for s in samples], device=self.device)
        loss = F.cross_entropy(self.net(x), y)
        grads = torch.autograd.grad(loss, self.params)
        grads = [g + WEIGHT_PRIOR * p if p.dim() >= 2 else g for g, p in zip(grads, self.params)]
        with torch.no_grad():
            torch._foreach_mul_(self.velocity, MU)
            torch._foreach_add_(self.velocity, grads, alpha=-LR)
            torch._foreach_add_(self.params, self.velocity)
        return loss.item()


# -- the benchmark ---------------------------------------------------------------------------------
def make_samples(n, side, channels, k, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": (rng.standard_normal((side, side, channels)) * 60).astype(np.float32),
             "image_label_id": int(i % k)} for i in range(n)]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_case(backbone, batch, side, device, steps, warmup, profile=False):
    k = 10
    model = dlbatch.create_dl_model("classification", backbone=backbone, backend="torch", device=device,
                                    class_ids=list(range(k)), image_dimensions=[side, side, 3], batch_size=batch,
                                    learning_rate=LR, momentum=MU, weight_prior=WEIGHT_PRIOR, seed=0)
    plain = PlainLoop(build_module(model.graph, model.state_dict(), model.get_param("batchnorm_momentum")),
                      device, model.get_param("class_ids"))
    data = make_samples(batch, side, 3, k)
    # the two start from the same weights and agree on the first loss
    first_dl = dlbatch.train_dl_model_batch(model, data)["loss_multinomial_logistic"]
    first_plain = plain.step(data)

    def dl_step():
        dlbatch.train_dl_model_batch(model, data)
        sync(device)

    def plain_step():
        plain.step(data)
        sync(device)

    for _ in range(warmup):
        dl_step()
        plain_step()
    t_dl, t_plain = [], []
    for i in range(steps):
        order = (dl_step, plain_step) if i % 2 == 0 else (plain_step, dl_step)
        for fn in order:
            t0 = time.perf_counter()
            fn()
            (t_dl if fn is dl_step else t_plain).append(time.perf_counter() - t0)
    med_dl, med_plain = statistics.median(t_dl), statistics.median(t_plain)
    record = {"backbone": backbone, "batch": [batch, 3, side, side], "device": device, "steps": steps,
              "dlbatch_median_s": round(med_dl, 5), "plain_torch_median_s": round(med_plain, 5),
              "ratio": round(med_dl / med_plain, 4),
              "first_loss_dlbatch": first_dl, "first_loss_plain": first_plain}
    if profile:
        record["profile"] = profile_step(model, data)
    return record


def profile_step(model, data, top=15):
    """Self time per torch op of one dlbatch training step (torch.profiler), plus the time spent
    outside torch ops (Python, numpy encoding, checks)."""
    from torch.profiler import ProfilerActivity, profile
    dlbatch.train_dl_model_batch(model, data)
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # the profiler's C++ side chats on stdout; keep stdout pure JSON
    try:
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            dlbatch.train_dl_model_batch(model, data)
        wall = time.perf_counter() - t0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events) / 1e6
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {"wall_s": round(wall, 4), "torch_ops_self_s": round(total_self, 4),
            "top_ops": [[e.key, e.count, round(e.self_cpu_time_total / 1e3, 2)] for e in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 steps, resnet18 at 64x64")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only", choices=["compact", "resnet18"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    steps = 3 if a.quick else max(20, a.steps)
    warmup = 1 if a.quick else a.warmup
    cases = [("compact", 16, 64), ("resnet18", 8, 64 if a.quick else 224)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for backbone, batch, side in cases:
            if a.only and backbone != a.only:
                continue
            results.append(run_case(backbone, batch, side, device, steps, warmup, a.profile))
    print(json.dumps({"benchmark": "torch_overhead", "torch": torch.__version__, "threads": a.threads,
                      "machine": platform.processor() or platform.machine(), "target_ratio": 1.05,
                      "cases": results}, indent=2))


if __name__ == "__main__":
    main()

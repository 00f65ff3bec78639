"""Where a numpy train step spends its time: per-node forward/backward times (summed over
steps, aggregated by op type and listed per node) plus the rest of the step (encode, loss,
weight prior, finiteness check, solver).

    .venv/bin/python bench/profile_numpy.py --backbone compact --batch 16 --side 64
    .venv/bin/python bench/profile_numpy.py --backbone resnet18 --batch 8 --side 224 --steps 5
    .venv/bin/python bench/profile_numpy.py ... --infer      # inference forward only
"""
from __future__ import annotations

import argparse
import collections
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_case import samples  # noqa: E402


FAULTS = collections.defaultdict(int)


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Timed:
    """Wraps a kernel; adds wall time of forward/backward to a table keyed by node index."""

    def __init__(self, kernel, idx, table):
        self.k, self.idx, self.table = kernel, idx, table
        self.op_type = kernel.op_type

    def forward(self, ctx, inputs, attrs):
        f0, t0 = _faults(), time.perf_counter()
        r = self.k.forward(ctx, inputs, attrs)
        self.table[(self.idx, "fwd")] += time.perf_counter() - t0
        FAULTS[(self.idx, "fwd")] += _faults() - f0
        return r

    def backward(self, ctx, saved, grads, attrs):
        f0, t0 = _faults(), time.perf_counter()
        r = self.k.backward(ctx, saved, grads, attrs)
        self.table[(self.idx, "bwd")] += time.perf_counter() - t0
        FAULTS[(self.idx, "bwd")] += _faults() - f0
        return r

    def __getattr__(self, name):
        return getattr(self.k, name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="compact")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--infer", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--unfused", action="store_true", help="run the graph's nodes without fusion")
    ap.add_argument("--threads", type=int, default=0, help="kernel threads (default: the backend's)")
    ap.add_argument("--network", default="", help="a bench/suite_networks.py network (its exported "
                    "ONNX file, as suite.py reads it) instead of a built-in --backbone")
    a = ap.parse_args()

    import dlbatch
    from dlbatch.backends.numpy_cpu import parallel
    from dlbatch.core.infer import raw_outputs
    if a.threads:
        parallel.set_num_threads(a.threads)
    data = samples(a.batch, a.side, 3, 10)
    solver = dict(learning_rate=0.01, momentum=0.9, weight_prior=1e-4)
    if a.network:
        from suite_case import model_files
        cache = Path(tempfile.gettempdir()) / "dlbatch-profile-models"  # the exports, kept between runs
        files = model_files(a.network, a.side, 3, 10, cache)
        model = dlbatch.read_dl_model(files["train"], backend="numpy", batch_size=a.batch, **solver)
        a.backbone = a.network
    else:
        model = dlbatch.create_dl_model("classification", backbone=a.backbone, backend="numpy",
                                        class_ids=list(range(10)), image_dimensions=[a.side, a.side, 3],
                                        batch_size=a.batch, **solver)
    fn = (lambda: raw_outputs(model, data)) if a.infer else (lambda: dlbatch.train_dl_model_batch(model, data))
    fn()
    prog = model.program()
    table = collections.defaultdict(float)
    plan = prog._plain if a.unfused else (prog._infer if a.infer else prog._fused)
    if a.unfused:
        prog._fused = prog._infer = prog._plain
    steps = plan.steps
    orig = [st.kernel for st in steps]
    for i, st in enumerate(steps):
        st.kernel = Timed(st.kernel, i, table)
    for _ in range(2):
        fn()
    table.clear()
    FAULTS.clear()
    f0 = _faults()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    for st, k in zip(steps, orig):
        st.kernel = k
    total = sum(times)
    nodes = steps
    by_op = collections.defaultdict(float)
    op_faults = collections.defaultdict(int)
    for (i, phase), t in table.items():
        by_op[(nodes[i].op_type, phase)] += t
        op_faults[(nodes[i].op_type, phase)] += FAULTS[(i, phase)]
    kern = sum(table.values())
    print(f"{a.backbone} {a.batch}x3x{a.side}x{a.side} {'infer' if a.infer else 'train'}: "
          f"median step {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms; "
          f"kernels {kern / a.steps * 1e3:.1f} ms/step, other {(total - kern) / a.steps * 1e3:.1f} ms/step; "
          f"{(_faults() - f0) / a.steps:.0f} page faults/step")
    print("\nby op (ms/step):")
    for (op, ph), t in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:24s} {ph}  {t / a.steps * 1e3:8.2f}  {100 * t / total:5.1f}%  "
              f"{op_faults[(op, ph)] / a.steps:6.0f} faults")
    print(f"\ntop {a.top} nodes (ms/step):")
    for (i, ph), t in sorted(table.items(), key=lambda kv: -kv[1])[:a.top]:
        n = nodes[i]
        print(f"  {i:3d} {n.op_type:24s} {ph} {t / a.steps * 1e3:8.2f}  {n.outputs[0]}")


if __name__ == "__main__":
    main()

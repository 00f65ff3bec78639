"""One case of the benchmark suite (a network of suite_networks.py at one batch size and image
side, one implementation) in its own process; prints one JSON line.

Implementations (--impl):
  numpy_train, torch_train  dlbatch.train_dl_model_batch on the model dlbatch.read_dl_model
                            makes of the network's training-form ONNX export (numpy / torch backend)
  numpy_infer               dlbatch's inference forward pass (raw_outputs) of that model
  dlbatch_ort_infer         the same call on the same model switched to dlbatch's onnxruntime
                            backend (set_dl_model_param(model, "backend", "onnxruntime")): its
                            session is built in the setup, so the steps time dlbatch's per-call
                            path around onnxruntime (against ort_infer: issue 16's <= 1.05)
  handwritten_train         the same torch.nn.Module trained by a plain PyTorch loop
                            (handwritten_torch.HandwrittenLoop's step: F.cross_entropy, HALCON-form
                            SGD), fed --layout nchw (contiguous NCHW) or channels_last (the module
                            and the batch in channels_last memory: oneDNN's fastest CPU layout)
  ort_infer                 onnxruntime running the eval-form export of the same module
  ort_pair                  dlbatch_ort_infer and ort_infer in this one process, in alternating
                            blocks of calls (paired.py): their ratio without the drift between
                            processes; the suite's dlbatch-onnxruntime / onnxruntime ratio
  export                    only write both ONNX files into --cache-dir (suite.py runs this once per
                            network and side, so the timed processes never import torch for it);
                            the record gives the forward multiply-accumulates per image and the
                            trainable parameter count

All trainers use learning rate 0.01, momentum 0.9, weight prior 1e-4 on rank >= 2 weights, as
step_case.py. dlbatch inference and onnxruntime inference both include dlbatch's encoding of the
samples (HWC images -> NCHW batch). Timing and memory as step_case.py: median of --steps timed
steps after --warmup, peak RSS during the steps over the RSS after setup.

--network and --impl also take "all" or comma-separated lists (handwritten_train then runs in
both layouts): every combination runs in this one process, one JSON line each. That is the
smoke-test mode; its timings interfere with each other and are not for tables.
A case that fails prints a record with "error" (the exception) instead of timings; the process
then exits with status 1 after the other cases.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import measure  # noqa: E402
from step_case import ort_session_fn, samples  # noqa: E402

IMPLS = ("numpy_train", "torch_train", "handwritten_train", "numpy_infer", "dlbatch_ort_infer", "ort_infer",
         "ort_pair")
LAYOUTS = ("nchw", "channels_last")
SOLVER = {"learning_rate": 0.01, "momentum": 0.9, "weight_prior": 1e-4}


def network_names() -> list[str]:
    """The suite's networks, read from suite_networks.py without importing torch."""
    import ast
    tree = ast.parse((HERE / "suite_networks.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NETWORKS" for t in node.targets):
            return [k.value for k in node.value.keys]
    raise RuntimeError("suite_networks.py has no NETWORKS dict")


def model_files(network: str, side: int, channels: int, k: int, cache_dir: Path) -> dict:
    """{"train": path, "eval": path} of the network's two exports; exported (torch imported)
    only where a file is missing."""
    stem = cache_dir / f"{network}-{side}x{side}x{channels}-k{k}"
    paths = {"train": Path(f"{stem}-train.onnx"), "eval": Path(f"{stem}-eval.onnx")}
    if not all(p.is_file() for p in paths.values()):
        import suite_networks
        net = suite_networks.build(network, channels, k)
        for form, path in paths.items():  # eval export first would not matter: it changes nothing
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            suite_networks.export_onnx(net, tmp, side, channels, training=form == "train")
            os.replace(tmp, path)
    return paths


def module_loop(net, learning_rate: float, momentum: float, weight_prior: float):
    """handwritten_torch.HandwrittenLoop (its step: train mode, F.cross_entropy, HALCON-form SGD
    with the velocity created at the first step) on a given module instead of a built-in one."""
    from handwritten_torch import HandwrittenLoop
    loop = HandwrittenLoop.__new__(HandwrittenLoop)  # its __init__ builds a built-in network
    loop.net, loop.params, loop.velocity = net, list(net.parameters()), None
    loop.decayed = [p for p in loop.params if p.dim() >= 2]
    loop.lr, loop.mu, loop.wp = learning_rate, momentum, weight_prior
    return loop


def setup(network: str, impl: str, layout: str, a, cache_dir: Path):
    """(step function, record fields) of one case; nothing timed yet."""
    data = samples(a.batch, a.side, a.channels, a.classes)
    record = {"network": network, "impl": impl, "batch": a.batch, "side": a.side, "threads": a.threads}
    if impl == "export":
        import torch
        import suite_networks
        model_files(network, a.side, a.channels, a.classes, cache_dir)
        net = suite_networks.build(network, a.channels, a.classes)
        record.update(forward_macs=suite_networks.forward_macs(net, a.side, a.channels),
                      parameters=sum(p.numel() for p in net.parameters() if p.requires_grad),
                      torch=torch.__version__)
        return None, record
    if impl == "handwritten_train":
        import torch
        torch.set_num_threads(a.threads)
        import suite_networks
        net = suite_networks.build(network, a.channels, a.classes)
        # the images' HWC memory seen as NCHW: channels_last strides
        x = torch.from_numpy(np.stack([s["image"] for s in data])).permute(0, 3, 1, 2)
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
        else:
            x = x.contiguous()
        y = torch.tensor([s["image_label_id"] for s in data], dtype=torch.int64)
        loop = module_loop(net, **SOLVER)
        record["layout"] = layout
        return (lambda: loop.step(x, y)), record
    import dlbatch
    files = model_files(network, a.side, a.channels, a.classes, cache_dir)
    backend = "torch" if impl == "torch_train" else "numpy"
    if backend == "torch":
        import torch
        torch.set_num_threads(a.threads)
    model = dlbatch.read_dl_model(files["train"], backend=backend, batch_size=a.batch, **SOLVER)
    if impl.endswith("train"):
        return (lambda: dlbatch.train_dl_model_batch(model, data)), record
    if impl in ("numpy_infer", "dlbatch_ort_infer"):
        from dlbatch.core.infer import raw_outputs
        if impl == "dlbatch_ort_infer":
            import onnxruntime as ort
            dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
            record["onnxruntime"] = ort.__version__
            raw_outputs(model, data)  # builds the session (as ort_infer's is built here)
        return (lambda: raw_outputs(model, data)), record
    import onnxruntime as ort
    record["onnxruntime"] = ort.__version__
    return ort_session_fn(model, data, a.threads, None, path=files["eval"]), record


def run_one(network: str, impl: str, layout: str, a, cache_dir: Path) -> dict:
    paired = None
    try:
        if impl == "ort_pair":  # dlbatch's onnxruntime call against the raw session, one process
            fn, record = setup(network, "dlbatch_ort_infer", layout, a, cache_dir)
            paired, _ = setup(network, "ort_infer", layout, a, cache_dir)
            record["impl"] = impl
        else:
            fn, record = setup(network, impl, layout, a, cache_dir)
    except Exception as exc:  # reported as the case's record: the suite goes on with the others
        rec = {"network": network, "impl": impl, "batch": a.batch, "side": a.side,
               "error": f"{type(exc).__name__}: {exc}"[:500]}
        return {**rec, "layout": layout} if impl == "handwritten_train" else rec
    if fn is None:
        return record
    try:
        return {**record, **measure(fn, a.steps, a.warmup, a.min_time, paired_with=paired, pairs=a.pairs)}
    except Exception as exc:
        return {**record, "error": f"{type(exc).__name__}: {exc}"[:500]}


def expand(value: str, known, name: str) -> list[str]:
    items = list(known) if value == "all" else [v for v in value.split(",") if v]
    unknown = [v for v in items if v not in known]
    if unknown:
        raise SystemExit(f"unknown {name} {', '.join(unknown)}; known: {', '.join(known)} (or 'all')")
    return items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--network", required=True, help="a suite_networks.NETWORKS name, a comma list or 'all'")
    ap.add_argument("--impl", required=True, help=f"one of {', '.join(IMPLS)}, export, a comma list or 'all'")
    ap.add_argument("--layout", default="channels_last", choices=LAYOUTS, help="handwritten_train's memory layout")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=0,
                    help="ort_pair: pairs of alternating blocks (default: --steps)")
    ap.add_argument("--min-time", type=float, default=0.0,
                    help="time more than --steps steps until they add up to this many seconds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="where the ONNX exports are kept (default: a fresh temp dir)")
    a = ap.parse_args(argv)
    os.environ.setdefault("DLBATCH_NUM_THREADS", str(a.threads))  # before dlbatch is imported
    networks = expand(a.network, network_names(), "network")
    impls = expand(a.impl, IMPLS + ("export",), "impl") if a.impl != "all" else list(IMPLS)
    several = len(networks) * len(impls) > 1
    cache_dir = Path(a.cache_dir) if a.cache_dir else Path(tempfile.mkdtemp(prefix="dlbatch_suite_"))
    failed = False
    for network in networks:
        for impl in impls:
            layouts = LAYOUTS if several and impl == "handwritten_train" else (a.layout,)
            for layout in layouts:
                rec = run_one(network, impl, layout, a, cache_dir)
                failed |= "error" in rec
                print(json.dumps(rec), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every case in its own process, one JSON object per case, then ratios and a
summary table. Options: --quick (fewer steps, no scaling sweep), --device cuda."""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = [("compact", 16, 64), ("resnet18", 8, 224)]
TRAIN_IMPLS = ["numpy_train", "torch_train", "handwritten_train"]
INFER_IMPLS = ["numpy_infer", "ort_infer"]


def run_case(impl, backbone, batch, side, steps, device="cpu"):
    cmd = [sys.executable, str(HERE / "step_case.py"), "--impl", impl, "--backbone", backbone,
           "--batch", str(batch), "--side", str(side), "--steps", str(steps), "--device", device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        rec = {"impl": impl, "backbone": backbone, "batch": batch, "side": side, "device": device,
               "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    else:
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(rec), flush=True)
    return rec


def ratio(a, b, key="median_s"):
    if a and b and key in a and key in b and b[key]:
        return round(a[key] / b[key], 3)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    steps = 5 if args.quick else 20
    results = {}
    for backbone, batch, side in SIZES:
        for impl in TRAIN_IMPLS + INFER_IMPLS:
            device = args.device if impl in ("torch_train", "handwritten_train") else "cpu"
            results[(impl, backbone)] = run_case(impl, backbone, batch, side, steps, device)

    summary = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                          f"{__import__('os').cpu_count()} cores", "ratios": {}}
    for backbone, batch, side in SIZES:
        r = lambda i: results[(i, backbone)]
        key = f"{backbone} {batch}x3x{side}x{side}"
        summary["ratios"][key] = {
            "numpy_train / handwritten_torch_train": ratio(r("numpy_train"), r("handwritten_train")),
            "torch_backend_train / handwritten_torch_train": ratio(r("torch_train"), r("handwritten_train")),
            "numpy_infer / onnxruntime_infer": ratio(r("numpy_infer"), r("ort_infer")),
            "numpy_train_mem / handwritten_torch_train_mem": ratio(r("numpy_train"), r("handwritten_train"),
                                                                   "peak_step_mem_mb"),
        }
    if not args.quick:
        scaling = []
        for batch in (1, 4, 16, 64):
            for impl in ("numpy_train", "handwritten_train"):
                scaling.append(run_case(impl, "compact", batch, 64, 10))
        for side in (32, 64, 128, 256):
            for impl in ("numpy_train", "handwritten_train"):
                scaling.append(run_case(impl, "compact", 8, side, 10))
        summary["scaling"] = [{k: s.get(k) for k in ("impl", "batch", "side", "median_s")} for s in scaling]
    print(json.dumps(summary, indent=1))
    print("\n| case | impl | median step (ms) | peak step memory (MB) |")
    print("|---|---|---|---|")
    for (impl, backbone), rec in results.items():
        size = next(f"{b}x3x{s}x{s}" for bb, b, s in SIZES if bb == backbone)
        ms = f"{rec['median_s'] * 1000:.1f}" if "median_s" in rec else rec.get("error", "?")
        mem = f"{rec['peak_step_mem_mb']:.0f}" if "peak_step_mem_mb" in rec else "-"
        print(f"| {backbone} {size} | {impl} | {ms} | {mem} |")


if __name__ == "__main__":
    main()

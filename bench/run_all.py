"""`make bench`: every case in its own process, one JSON object per case, then ratios, the
scaling sweep and Markdown summary tables. Options: --quick (fewer steps, no scaling sweep),
--device cuda, --threads N (default 2: numpy backend threads, torch threads, onnxruntime
intra-op threads alike), --model classification|segmentation|detection|detection_r2|all
(default all: the classification cases, then the segmentation cases, then the detection cases,
then the oriented detection case and the rotated-NMS micro-benchmark, then the suite), or
--model suite: only the benchmark suite (bench/suite.py: eleven networks of different shapes
at batch 1-64 and sides 32-256, numpy and torch backends against a hand-written PyTorch loop
fed NCHW and channels_last, numpy against onnxruntime inference; CPU only; --quick, --threads
and --rounds are passed on; it writes bench/results/suite.json and suite.md).

Segmentation cases train and run the segmentation model type (backbone + top-down decoder,
per-pixel loss) on dlbatch.data.segmentation_samples; the hand-written reference is the same
network in plain PyTorch (handwritten_torch.Segmenter). Their table keys start with
"segmentation"; classification keys and output are as before.

Detection cases train and run the detection model type (backbone + feature pyramid on levels
2..4 + RetinaNet heads shared across levels, capacity medium, 9 anchors per location; focal +
Huber losses) on dlbatch.data.detection_samples; the hand-written reference is the same network
in plain PyTorch (handwritten_torch.Detector) with torchvision's sigmoid focal and smooth-L1
losses. Every trainer's timed step includes the batch's anchor matching and box coding
(dlbatch's numpy target code for all three). Inference is the raw heads; the model type's
post-processing (decode + NMS, on stored raw outputs of a partly trained network) is timed on
its own (impl "postprocess") and reported per image. Their keys start with "detection".

The oriented detection case (model key detection_r2, step_case.py --model detection
--instance-type rectangle2) is the same at compact 8x3x128x128 with rectangle2 boxes: 8
oriented anchors per location (step_case.RECTANGLE2), 5 box outputs per anchor (the angle
delta last), matching and NMS with the exact rotated IoU; the hand-written Detector has 5 box
outputs per anchor and gets its targets from the same numpy code. Its keys start with
"detection rectangle2"; targets as for rectangle1. With it (--model detection_r2 or all)
rotated_nms.py runs once: nms and batched_nms with the rotated IoU on 1,000 and 10,000 random
oriented candidate boxes (--quick: 3 calls per median instead of 5), reported under
"rotated_nms" in the JSON and in its own table.

Train steps are compared with a plain hand-written PyTorch loop of the same network and
solver (handwritten_torch.py); inference with onnxruntime running the file write_dl_model
wrote. Ratios are dlbatch / reference from this one run (< 1 means dlbatch is faster).
Memory: see step_case.py (peak RSS during the steps over the RSS after setup). calibrate.py's
GEMM and copy speeds, taken before and after, tell a quiet machine from a loaded one.
With --rounds R (default 3) every main case runs R times, the implementations alternating
within each round. A ratio is the median over rounds of that round's ratio (each pair measured
within seconds of each other, so slow drifts in machine speed cancel), shown with its range
over rounds; the tables also list each implementation's best round.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = [("compact", 16, 64), ("resnet18", 8, 224)]  # classification
SEGMENTATION_SIZES = [("compact", 16, 64), ("resnet18", 4, 256)]
DETECTION_SIZES = [("compact", 8, 128), ("resnet18", 2, 512)]
DETECTION_R2_SIZES = [("compact", 8, 128)]
MODELS = {"classification": SIZES, "segmentation": SEGMENTATION_SIZES, "detection": DETECTION_SIZES,
          "detection_r2": DETECTION_R2_SIZES}
# a model key's step_case.py arguments and its name in the case keys, where they differ from it
MODEL_ARGS = {"detection_r2": ["--model", "detection", "--instance-type", "rectangle2"]}
MODEL_LABELS = {"detection_r2": "detection rectangle2"}
NMS_SIZES = [1000, 10000]  # rotated_nms.py's candidate boxes
# timed steps per process where a full run uses fewer than 20: a numpy segmentation step of
# resnet18 at 4x3x256x256 takes over a second on the 2-core machine (3 rounds x 3 trainers)
# (a detection step of resnet18 at 2x3x512x512 is of the same order)
FULL_STEPS = {("segmentation", "resnet18"): 10, ("detection", "resnet18"): 10}
TRAIN_IMPLS = ["numpy_train", "torch_train", "handwritten_train"]
INFER_IMPLS = ["numpy_infer", "ort_infer"]
EXTRA_IMPLS = {"detection": ["postprocess"], "detection_r2": ["postprocess"]}  # no reference to compare with


def case_key(model, backbone, batch, side):
    """The name of a case in the tables, the ratios and TARGETS."""
    size = f"{backbone} {batch}x3x{side}x{side}"
    return size if model == "classification" else f"{MODEL_LABELS.get(model, model)} {size}"


# the issues' targets: ratio keys -> {case key: bound}; segmentation has the classification
# targets (numpy train <= 1.2 x hand-written torch, torch backend <= 1.05 x)
SEGMENTATION_TARGETS = {"numpy_train / handwritten_torch_train": 1.2, "numpy_infer / onnxruntime_infer": 1.5,
                        "numpy_train_mem / handwritten_torch_train_mem": 1.5,
                        "torch_backend_train / handwritten_torch_train": 1.05}
TARGETS = {
    "numpy_train / handwritten_torch_train": {"compact 16x3x64x64": 1.0, "resnet18 8x3x224x224": 1.2},
    "numpy_infer / onnxruntime_infer": {"compact 16x3x64x64": 1.5, "resnet18 8x3x224x224": 1.5},
    "numpy_train_mem / handwritten_torch_train_mem": {"compact 16x3x64x64": 1.5, "resnet18 8x3x224x224": 1.5},
    "torch_backend_train / handwritten_torch_train": {"compact 16x3x64x64": 1.05, "resnet18 8x3x224x224": 1.05},
}
for name, bound in SEGMENTATION_TARGETS.items():
    TARGETS[name].update({case_key("segmentation", *size): bound for size in SEGMENTATION_SIZES})
    # detection (rectangle1 and rectangle2) has the same targets
    TARGETS[name].update({case_key("detection", *size): bound for size in DETECTION_SIZES})
    TARGETS[name].update({case_key("detection_r2", *size): bound for size in DETECTION_R2_SIZES})


def run_case(impl, backbone, batch, side, steps, device="cpu", threads=2, model="classification", layout=None,
             min_time=0.0, pairs=0):
    """step_case.py in its own process; `layout` (hand-written impls) is passed as --layout
    (default: step_case's, both layouts, the faster reported); `min_time` as --min-time."""
    cmd = [sys.executable, str(HERE / "step_case.py"), "--impl", impl, "--backbone", backbone,
           "--batch", str(batch), "--side", str(side), "--steps", str(steps), "--device", device,
           "--threads", str(threads)] + (["--layout", layout] if layout else [])
    cmd += ["--min-time", str(min_time)] if min_time else []
    cmd += ["--pairs", str(pairs)] if pairs else []
    if model != "classification":
        cmd += MODEL_ARGS.get(model, ["--model", model])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        rec = {"impl": impl, "backbone": backbone, "batch": batch, "side": side, "device": device,
               "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        if model != "classification":
            rec = {"model": model, **rec}
    else:
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(rec), flush=True)
    return rec


def run_rotated_nms(quick=False, sizes=NMS_SIZES) -> list[dict]:
    """rotated_nms.py in its own process: one record per number of candidate boxes (or one
    record with "error")."""
    cmd = [sys.executable, str(HERE / "rotated_nms.py"), "--sizes", *map(str, sizes),
           "--repeats", "3" if quick else "5"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        records = [{"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}]
    else:
        records = json.loads(proc.stdout.strip().splitlines()[-1])["rotated_nms"]
    for rec in records:
        print(json.dumps({"rotated_nms": rec}), flush=True)
    return records


def run_suite(args) -> int:
    """bench/suite.py in its own process, its output passed through; its exit status."""
    cmd = [sys.executable, str(HERE / "suite.py"), "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--rounds", str(args.rounds)] if args.rounds else []
    sys.stdout.flush()
    return subprocess.run(cmd).returncode


def machine_state() -> dict:
    """calibrate.py in its own process: how fast GEMM and memory are right now (see there)."""
    proc = subprocess.run([sys.executable, str(HERE / "calibrate.py")], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr.strip()[-200:]}


def ratio(a, b, key="median_s"):
    if a and b and key in a and key in b and b[key]:
        return round(a[key] / b[key], 3)
    return None


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None,
                    help="run every main case this many times, implementations alternating within a "
                         "round; a ratio is the median of the per-round ratios (default 3, --quick 1): "
                         "other load on the machine then distorts a ratio less")
    ap.add_argument("--model", default="all", choices=["all", *MODELS, "suite"],
                    help="which cases to run (the scaling sweep belongs to classification; suite: "
                         "only bench/suite.py, which 'all' runs last)")
    args = ap.parse_args()
    if args.model == "suite":
        sys.exit(run_suite(args))
    t_start = time.perf_counter()
    steps = 5 if args.quick else 20
    rounds = args.rounds or (1 if args.quick else 3)
    cases = [(m, *size) for m in MODELS if args.model in ("all", m) for size in MODELS[m]]
    case_steps = {c: min(steps, FULL_STEPS.get(c[:2], steps)) for c in cases}
    state = {"before": machine_state()}
    results = {}  # (impl, case key) -> best round's record
    per_round = {}  # (impl, case key) -> every round's record
    for model, backbone, batch, side in cases:
        key = case_key(model, backbone, batch, side)
        for _ in range(rounds):
            for impl in TRAIN_IMPLS + INFER_IMPLS + EXTRA_IMPLS.get(model, []):
                device = args.device if impl in ("torch_train", "handwritten_train") else "cpu"
                rec = run_case(impl, backbone, batch, side, case_steps[(model, backbone, batch, side)], device,
                               args.threads, model)
                per_round.setdefault((impl, key), []).append(rec)
                best = results.get((impl, key))
                if best is None or "median_s" not in best or rec.get("median_s", float("inf")) < best["median_s"]:
                    results[(impl, key)] = rec

    state["after"] = machine_state()
    summary = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
                          f"{os.cpu_count()} cores", "threads": args.threads, "rounds": rounds,
               "machine_state": state, "ratios": {}, "ratio_ranges": {}, "best_round_ratios": {}}
    pairs = {"numpy_train / handwritten_torch_train": ("numpy_train", "handwritten_train", "median_s"),
             "torch_backend_train / handwritten_torch_train": ("torch_train", "handwritten_train", "median_s"),
             "numpy_infer / onnxruntime_infer": ("numpy_infer", "ort_infer", "median_s"),
             "numpy_train_mem / handwritten_torch_train_mem": ("numpy_train", "handwritten_train",
                                                               "peak_step_mem_mb")}
    for case in cases:
        key = case_key(*case)
        for part in ("ratios", "ratio_ranges", "best_round_ratios"):
            summary[part][key] = {}
        for name, (a, b, field) in pairs.items():
            paired = [v for v in (ratio(x, y, field) for x, y in zip(per_round[(a, key)], per_round[(b, key)]))
                      if v is not None]
            summary["ratios"][key][name] = round(statistics.median(paired), 3) if paired else None
            summary["ratio_ranges"][key][name] = [min(paired), max(paired)] if paired else None
            summary["best_round_ratios"][key][name] = ratio(results[(a, key)], results[(b, key)], field)
    scaling = []
    if not args.quick and args.model in ("all", "classification"):
        for batch in (1, 4, 16, 64):
            for impl in ("numpy_train", "handwritten_train"):
                scaling.append(run_case(impl, "compact", batch, 64, 10, threads=args.threads))
        for side in (32, 64, 128, 256):
            for impl in ("numpy_train", "handwritten_train"):
                scaling.append(run_case(impl, "compact", 8, side, 10, threads=args.threads))
        summary["scaling"] = [{k: s.get(k) for k in ("impl", "batch", "side", "median_s")} for s in scaling]
    post = {key: rec.get("per_image_s") for (impl, key), rec in results.items() if impl == "postprocess"}
    if post:
        summary["postprocess_per_image_s"] = post
    rotated = run_rotated_nms(args.quick) if args.model in ("all", "detection_r2") else []
    if rotated:
        summary["rotated_nms"] = rotated
    summary["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(summary, indent=1))

    fewer = sorted({(case_key(*c), n) for c, n in case_steps.items() if n != steps})
    fewer = "".join(f"; {key}: {n} steps" for key, n in fewer)
    print(f"\n### Step times and peak step memory ({args.threads} threads, median of {steps} steps{fewer}, "
          f"best of {rounds} round(s))\n")
    print(f"Machine state (single-thread sgemm GFLOP/s, copy GB/s): before {state['before']}, "
          f"after {state['after']}\n")
    print("| case | impl | median step (ms) | min step (ms) | peak step memory (MB) |")
    print("|---|---|---|---|---|")
    for (impl, key), rec in results.items():
        ms = f"{rec['median_s'] * 1000:.1f}" if "median_s" in rec else rec.get("error", "?")
        mn = f"{rec['min_s'] * 1000:.1f}" if "min_s" in rec else "-"
        mem = f"{rec['peak_step_mem_mb']:.0f}" if "peak_step_mem_mb" in rec else "-"
        print(f"| {key} | {impl} | {ms} | {mn} | {mem} |")

    print(f"\n### Ratios (dlbatch / reference, this run: median over {rounds} paired round(s))\n")
    print("| case | ratio | value | range over rounds | best round / best round | target |")
    print("|---|---|---|---|---|---|")
    for key, ratios in summary["ratios"].items():
        for name, value in ratios.items():
            bound = TARGETS.get(name, {}).get(key)
            verdict = "" if bound is None or value is None else (" (met)" if value <= bound else " (missed)")
            rng = summary["ratio_ranges"][key][name]
            if verdict and rng is not None and rng[0] <= bound < rng[1]:
                verdict = verdict[:-1] + "; rounds on both sides)"
            spread = "-" if rng is None else f"{rng[0]:.3f}-{rng[1]:.3f}"
            best = summary["best_round_ratios"][key][name]
            print(f"| {key} | {name} | {fmt(value, '.3f')} | {spread} | {fmt(best, '.3f')} "
                  f"| {'-' if bound is None else f'<= {bound}'}{verdict} |")

    if post:
        print("\n### Detection post-processing (decode + NMS of stored raw outputs, numpy, best round)\n")
        print("| case | ms per image | candidates per image | detections per image |")
        print("|---|---|---|---|")
        for key in post:
            rec = results[("postprocess", key)]
            ms = f"{rec['per_image_s'] * 1000:.2f}" if "per_image_s" in rec else rec.get("error", "?")
            print(f"| {key} | {ms} | {fmt(rec.get('candidates_per_image'), '.0f')} "
                  f"| {fmt(rec.get('detections_per_image'), '.1f')} |")

    if rotated:
        print("\n### Rotated NMS (numpy, exact rotated IoU, threshold 0.5, 3 classes; median per call)\n")
        print("| candidate boxes | nms (ms) | of which rotated IoU (ms) | exact clipping alone (ms) "
              "| batched_nms (ms) | kept (nms / batched) | pairs past the prefilter | boolean matrix (MB) "
              "| peak memory of a call (MB) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for rec in rotated:
            if "error" in rec:
                print(f"| - | {rec['error']} | | | | | | | |")
                continue
            print(f"| {rec['n']:,} | {rec['nms_s'] * 1000:.1f} | {rec['iou_s'] * 1000:.1f} "
                  f"| {rec['clip_pairs_s'] * 1000:.1f} | {rec['batched_nms_s'] * 1000:.1f} "
                  f"| {rec['kept_nms']} / {rec['kept_batched_nms']} | {rec['prefilter_pairs']:,} "
                  f"| {rec['suppression_matrix_mb']:g} | {rec['peak_call_mem_mb']:.0f} |")

    if scaling:
        print("\n### Scaling (compact backbone, train step, median of 10 steps)\n")
        print("| batch x side | numpy (ms) | hand-written torch (ms) | numpy / torch | numpy ms per sample |")
        print("|---|---|---|---|---|")
        for i in range(0, len(scaling), 2):
            a, b = scaling[i], scaling[i + 1]
            na, nb = a.get("median_s"), b.get("median_s")
            per = None if na is None else na * 1000 / a["batch"]
            print(f"| {a['batch']} x {a['side']} | {fmt(na and na * 1000, '.1f')} | {fmt(nb and nb * 1000, '.1f')} "
                  f"| {fmt(ratio(a, b), '.2f')} | {fmt(per, '.2f')} |")
    print(f"\n(bench took {summary['elapsed_s']:.0f} s)")
    if args.model == "all" and run_suite(args) != 0:
        sys.exit("bench/suite.py failed")


if __name__ == "__main__":
    main()

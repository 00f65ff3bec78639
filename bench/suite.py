"""The benchmark suite: many networks, each trained by dlbatch's numpy and torch backends and by a
hand-written PyTorch loop, and run for inference by dlbatch (numpy backend, onnxruntime backend)
and by a raw onnxruntime session.

Networks: the seven of suite_networks.py (torch.nn.Modules exported with torch.onnx.export and
read with dlbatch.read_dl_model; suite_case.py times them, the hand-written loop in contiguous
NCHW and in channels_last, the faster of the two counts), and, through step_case.py as
run_all.py runs them, dlbatch's built-in compact and resnet18 classifiers and the compact
segmentation and detection models (step_case.py --layout nchw and channels_last, each in its
own process, as for the others).

Inference: numpy_infer is dlbatch's forward pass (raw_outputs) on the numpy backend,
dlbatch_ort_infer the same call after set_dl_model_param(model, "backend", "onnxruntime"),
ort_infer a raw onnxruntime session on the network's file; all three include dlbatch's encoding
of the samples. dlbatch_ort_infer / ort_infer is dlbatch's own cost around onnxruntime (issue
16: <= 1.05 on every case); numpy_infer / ort_infer is reported with no target. The two
onnxruntime calls run in one process (ort_pair), in alternating blocks of calls (paired.py):
between processes the same session's time moved by up to 1.6x, far more than the 5% measured;
their records in a round are split out of that one (split_pair).

Every case and implementation runs in its own process (the two onnxruntime calls: one). Per case, --rounds rounds run all
implementations back to back; a ratio is the median over rounds of that round's ratio (pairs
measured within seconds of each other, so drifts of the machine's speed cancel); step times
are the median over rounds of each process's median step. calibrate.py's GEMM and copy speeds,
before and after, tell a quiet machine from a loaded one. Writes <out-dir>/suite.json (every
record of every round, the ratios, the issue's targets) and <out-dir>/suite.md (the table).

    .venv/bin/python bench/suite.py             # full: 15 cases, 3 rounds (~20 min on 2 quiet cores)
    .venv/bin/python bench/suite.py --quick     # one case per network, 1 round, 3 steps (~5 min)
    .venv/bin/python bench/suite.py --smoke     # tiny sizes, 1 step: the scripts still work
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_all import machine_state, run_case  # noqa: E402

# case: (network, batch, side); networks not in suite_networks.py run through step_case.py
STEP_CASE_NETWORKS = {"compact": ("classification", "compact"), "resnet18": ("classification", "resnet18"),
                      "segmentation compact": ("segmentation", "compact"),
                      "detection compact": ("detection", "compact")}
CASES = [("compact", 16, 64), ("compact", 1, 64), ("resnet18", 16, 128),
         ("plain_narrow", 64, 64), ("plain_narrow", 1, 256), ("plain_wide", 16, 64),
         ("bottleneck", 16, 128), ("mobilenetv2_se", 16, 128), ("mobilenetv2_se", 64, 32),
         ("resnext", 16, 64), ("densenet", 16, 64), ("upsample", 16, 128), ("upsample", 1, 256),
         ("segmentation compact", 16, 64), ("detection compact", 8, 128)]
SMOKE_SIDE = 32  # --smoke: batch 2 at this side (detection needs 32; at 16 some networks end at 1x1)
HANDWRITTEN = ("handwritten_train_nchw", "handwritten_train_channels_last")
SUITE_IMPLS = ["numpy_train", "torch_train", *HANDWRITTEN, "numpy_infer", "ort_pair"]
PAIRED = ("dlbatch_ort_infer", "ort_infer")  # the records split out of ort_pair's
STEP_CASE_IMPLS = SUITE_IMPLS
RATIOS = {"numpy_train / handwritten_torch_train": ("numpy_train", "handwritten", "median_s"),
          "torch_backend_train / handwritten_torch_train": ("torch_train", "handwritten", "median_s"),
          "numpy_infer / onnxruntime_infer": ("numpy_infer", "ort_infer", "median_s"),
          # measured in one process, alternating (ort_pair's paired_ratio)
          "dlbatch_onnxruntime_infer / onnxruntime_infer": ("ort_pair", None, "paired_ratio"),
          "numpy_train_mem / handwritten_torch_train_mem": ("numpy_train", "handwritten", "peak_step_mem_mb")}
# issue 16's targets over the suite (one run on the 2-core development machine)
TARGETS = {"numpy_train_geomean": 1.1, "numpy_train_worst": 1.3, "torch_backend_train_worst": 1.05,
           "numpy_train_mem_worst": 1.5, "dlbatch_onnxruntime_infer_worst": 1.05}


def case_key(network: str, batch: int, side: int) -> str:
    """As run_all.case_key: "compact 16x3x64x64", "segmentation compact 16x3x64x64"."""
    return f"{network} {batch}x3x{side}x{side}"


def run_suite_case(network, impl, batch, side, steps, warmup, threads, cache_dir, min_time=0.0, pairs=0) -> dict:
    """suite_case.py in its own process; impl may carry the layout ("handwritten_train_nchw")."""
    layout = None
    for lay in ("nchw", "channels_last"):
        if impl == f"handwritten_train_{lay}":
            impl, layout = "handwritten_train", lay
    cmd = [sys.executable, str(HERE / "suite_case.py"), "--network", network, "--impl", impl, "--batch",
           str(batch), "--side", str(side), "--steps", str(steps), "--warmup", str(warmup),
           "--threads", str(threads), "--cache-dir", str(cache_dir)] + (["--layout", layout] if layout else [])
    cmd += ["--min-time", str(min_time)] if min_time else []
    cmd += ["--pairs", str(pairs)] if pairs and impl == "ort_pair" else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = proc.stderr.strip().splitlines()
        rec = {"network": network, "impl": impl, "batch": batch, "side": side,
               "error": tail[-1] if tail else f"exit status {proc.returncode}"}
    print(json.dumps(rec), flush=True)
    return rec


def label(rec: dict) -> str:
    """A record's implementation label: the hand-written loop's carries its layout."""
    return f"handwritten_train_{rec['layout']}" if rec["impl"] == "handwritten_train" else rec["impl"]


def split_pair(rnd: dict) -> dict:
    """The round with ort_pair's two timings as records of their own (PAIRED), for the step
    time columns and the numpy / onnxruntime ratio."""
    pair = rnd.get("ort_pair")
    if not pair or "error" in pair:
        return rnd
    common = {k: pair[k] for k in ("network", "backbone", "model", "batch", "side", "threads") if k in pair}
    out = dict(rnd)
    for name in PAIRED:
        out[name] = {**common, "impl": name, **pair[name], "steps": pair["steps"],
                     "peak_step_mem_mb": pair["peak_step_mem_mb"], "paired_in": "ort_pair"}
    return out


def smoke_records(networks, batch, side, a, cache_dir) -> dict:
    """--smoke: every suite network's export and implementations in one suite_case.py process
    (its multi-case mode: the timings interfere; what a smoke run checks is that every case runs
    and the records' form): {network: {label: record}}."""
    impls = ["export", *dict.fromkeys("handwritten_train" if i in HANDWRITTEN else i for i in SUITE_IMPLS)]
    cmd = [sys.executable, str(HERE / "suite_case.py"), "--network", ",".join(networks), "--impl", ",".join(impls),
           "--batch", str(batch), "--side", str(side), "--steps", str(a.steps), "--warmup", str(a.warmup),
           "--threads", str(a.threads), "--cache-dir", str(cache_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = {n: {} for n in networks}
    for line in proc.stdout.strip().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # not a record (a library's message)
            continue
        print(line, flush=True)
        out[rec["network"]][label(rec)] = rec
    for n in networks:
        if not out[n]:
            tail = proc.stderr.strip().splitlines()
            out[n]["export"] = {"network": n, "impl": "export", "error": tail[-1] if tail else "failed"}
    return out


def run_round(network, batch, side, a, cache_dir) -> dict:
    """One record per implementation, back to back: {impl label: record}."""
    if network in STEP_CASE_NETWORKS:
        model, backbone = STEP_CASE_NETWORKS[network]
        out = {}
        for name in STEP_CASE_IMPLS:
            impl, layout = name, None
            if name in HANDWRITTEN:
                impl, layout = "handwritten_train", name.rsplit("train_", 1)[1]
            out[name] = run_case(impl, backbone, batch, side, a.steps, threads=a.threads, model=model, layout=layout,
                                 min_time=a.min_time, pairs=a.pairs if impl == "ort_pair" else 0)
        return split_pair(out)
    return split_pair({impl: run_suite_case(network, impl, batch, side, a.steps, a.warmup, a.threads, cache_dir,
                                            a.min_time, a.pairs) for impl in SUITE_IMPLS})


def run_case_rounds(network, batch, side, a, cache_dir, smoke=None) -> dict:
    """One case: the export (suite networks), then --rounds rounds, summarized; `smoke` (--smoke)
    holds the records of the one multi-case process instead."""
    entry = {"case": case_key(network, batch, side), "network": network, "batch": batch, "side": side,
             "runner": "step_case" if network in STEP_CASE_NETWORKS else "suite_case"}
    if entry["runner"] == "suite_case":  # export once, outside the timed processes
        if smoke is not None:
            smoke = dict(smoke)
            exp = smoke.pop("export", {"error": "no export record"})
        else:
            exp = run_suite_case(network, "export", batch, side, 1, 0, a.threads, cache_dir)
        if "error" in exp:
            return {**entry, "error": exp["error"]}
        entry.update(forward_macs=exp["forward_macs"], parameters=exp["parameters"])
    rounds = [split_pair(smoke)] if smoke is not None else [run_round(network, batch, side, a, cache_dir)
                                                for _ in range(a.rounds)]
    return {**entry, **summarize_case(rounds), "rounds": rounds}


def fastest_handwritten(rnd: dict) -> tuple[str | None, dict | None]:
    timed = [(rnd[k]["median_s"], k) for k in HANDWRITTEN if k in rnd and "median_s" in rnd[k]]
    if not timed:
        return None, None
    label = min(timed)[1]
    return label, rnd[label]


def round_ratios(rnd: dict) -> dict:
    """This round's ratios (None where a side is missing or failed); the hand-written side is the
    faster layout of this round."""
    _, hw = fastest_handwritten(rnd)
    out = {}
    for name, (a, b, field) in RATIOS.items():
        num, den = rnd.get(a), hw if b == "handwritten" else rnd.get(b)
        if b is None:  # a ratio the record measured itself
            out[name] = round(num[field], 3) if num and num.get(field) is not None else None
            continue
        ok = num and den and field in num and field in den and den[field] > 0
        out[name] = round(num[field] / den[field], 3) if ok else None
    return out


def summarize_case(rounds: list[dict]) -> dict:
    """Median ratios over rounds, their ranges, median step times (ms), peak memory (MB) and the
    layout the hand-written loop was faster in (in most rounds)."""
    per_round = [round_ratios(r) for r in rounds]
    ratios, ranges = {}, {}
    for name in RATIOS:
        vals = [p[name] for p in per_round if p[name] is not None]
        ratios[name] = round(statistics.median(vals), 3) if vals else None
        ranges[name] = [min(vals), max(vals)] if vals else None
    step_ms, mem_mb = {}, {}
    for label in {k for r in rounds for k in r}:
        recs = [r[label] for r in rounds if label in r and "median_s" in r[label]]
        if recs:
            step_ms[label] = round(statistics.median(r["median_s"] for r in recs) * 1000, 2)
            mem_mb[label] = round(statistics.median(r["peak_step_mem_mb"] for r in recs), 1)
    layouts = [fastest_handwritten(r)[0] for r in rounds]
    layouts = [lay for lay in layouts if lay]
    errors = sorted({f"{label}: {rec['error']}" for r in rounds for label, rec in r.items() if "error" in rec})
    return {"ratios": ratios, "ranges": ranges, "step_ms": step_ms, "peak_step_mem_mb": mem_mb,
            "handwritten_layout": max(set(layouts), key=layouts.count).rsplit("train_", 1)[1] if layouts else None,
            "errors": errors}


def check_targets(cases: list[dict]) -> dict:
    """Issue 16's targets over the suite: value, the case that sets it, bound, met."""
    def worst(name):
        vals = [(c["ratios"][name], c["case"]) for c in cases if c.get("ratios", {}).get(name) is not None]
        return max(vals) if vals else (None, None)
    train = [c["ratios"]["numpy_train / handwritten_torch_train"] for c in cases
             if c.get("ratios", {}).get("numpy_train / handwritten_torch_train")]
    geo = round(math.exp(statistics.fmean(math.log(v) for v in train)), 3) if train else None
    found = {"numpy_train_geomean": (geo, f"{len(train)} cases"),
             "numpy_train_worst": worst("numpy_train / handwritten_torch_train"),
             "torch_backend_train_worst": worst("torch_backend_train / handwritten_torch_train"),
             "numpy_train_mem_worst": worst("numpy_train_mem / handwritten_torch_train_mem"),
             "dlbatch_onnxruntime_infer_worst": worst("dlbatch_onnxruntime_infer / onnxruntime_infer")}
    return {name: {"value": v, "where": where, "bound": TARGETS[name], "met": None if v is None else v <= TARGETS[name]}
            for name, (v, where) in found.items()}


def fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(summary: dict) -> str:
    s = summary
    st = s["machine_state"]
    lines = [f"## Benchmark suite ({s['mode']})", "",
             f"{s['machine']}; {s['threads']} threads for numpy, torch and onnxruntime; {s['rounds']} round(s) per "
             f"case, {s['steps']} timed steps per process (more until they add up to {s.get('min_time_s', 0)} s) "
             f"after {s['warmup']} warm-up (step_case cases: 3); the two onnxruntime calls in {s.get('ort_pairs', '-')} "
             f"pairs of alternating blocks in one process. "
             f"Machine speed (calibrate.py, single-thread sgemm GFLOP/s and copy GB/s): before {st.get('before')}, "
             f"after {st.get('after')}; a loaded machine (other processes on the cores) slows torch's 2-thread "
             f"steps most and moves every ratio.", "",
             "Step times in ms (median over rounds); ratios dlbatch / reference (median over rounds of the "
             "per-round ratio, range in brackets); hand-written torch: the faster of contiguous NCHW and "
             "channels_last in each round (the layout named is the one faster in most rounds); inference: "
             "dlbatch on its numpy backend, dlbatch on its onnxruntime backend, a raw onnxruntime session (these "
             "two in one process, in alternating blocks of calls; their ratio is the median of the per-pair "
             "ratios); "
             "memory: peak step memory in MB, numpy / hand-written.", "",
             "| case | fwd MMAC / image | numpy train | torch backend train | hand-written torch train | "
             "numpy / hand-written | torch backend / hand-written | numpy infer | dlbatch onnxruntime infer | "
             "onnxruntime | numpy / onnxruntime | dlbatch onnxruntime / onnxruntime | "
             "peak memory numpy / hand-written |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in s["cases"]:
        if "ratios" not in c:
            lines.append(f"| {c['case']} | error: {c.get('error', '?')} |" + "  |" * 11)
            continue
        ms, mem, r, rg = c["step_ms"], c["peak_step_mem_mb"], c["ratios"], c["ranges"]
        hw_label = f"handwritten_train_{c['handwritten_layout']}" if c["handwritten_layout"] else None
        hw = ms.get(hw_label) if hw_label else None
        macs = c.get("forward_macs")

        def ratio(name):
            v, rng = r[name], rg[name]
            return "-" if v is None else f"{v:.2f}" + ("" if rng[0] == rng[1] else f" ({rng[0]:.2f}-{rng[1]:.2f})")
        mem_txt = (f"{fmt(mem.get('numpy_train'), '.0f')} / {fmt(mem.get(hw_label), '.0f')} = "
                   f"{fmt(r['numpy_train_mem / handwritten_torch_train_mem'])}")
        lines.append(f"| {c['case']} | {fmt(macs and macs / 1e6, '.1f')} | {fmt(ms.get('numpy_train'), '.1f')} | "
                     f"{fmt(ms.get('torch_train'), '.1f')} | {fmt(hw, '.1f')} ({c['handwritten_layout'] or '-'}) | "
                     f"{ratio('numpy_train / handwritten_torch_train')} | "
                     f"{ratio('torch_backend_train / handwritten_torch_train')} | "
                     f"{fmt(ms.get('numpy_infer'), '.1f')} | {fmt(ms.get('dlbatch_ort_infer'), '.2f')} | "
                     f"{fmt(ms.get('ort_infer'), '.2f')} | {ratio('numpy_infer / onnxruntime_infer')} | "
                     f"{ratio('dlbatch_onnxruntime_infer / onnxruntime_infer')} | {mem_txt} |")
    names = {"numpy_train_geomean": "numpy train / hand-written torch, geometric mean over the cases",
             "numpy_train_worst": "numpy train / hand-written torch, worst case",
             "torch_backend_train_worst": "torch backend train / hand-written torch, worst case",
             "numpy_train_mem_worst": "numpy train peak memory / hand-written torch, worst case",
             "dlbatch_onnxruntime_infer_worst": "dlbatch with onnxruntime / raw onnxruntime session, worst case"}
    lines += ["", "| target (issue 16) | value | where | bound | |", "|---|---|---|---|---|"]
    for name, t in s["targets"].items():
        verdict = "-" if t["met"] is None else ("met" if t["met"] else "**missed**")
        lines.append(f"| {names[name]} | {fmt(t['value'], '.3f')} | {t['where'] or '-'} | <= {t['bound']} | {verdict} |")
    errors = [f"- {c['case']}: {e}" for c in s["cases"] for e in c.get("errors", [])]
    if errors:
        lines += ["", "Errors:", *errors]
    lines += ["", f"(suite took {s['elapsed_s']:.0f} s)", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first case of every network, 1 round, 3 steps")
    ap.add_argument("--smoke", action="store_true", help="batch 2, side 32, 1 step, 1 round, no calibration, "
                                                         "the suite networks in one process: for tests")
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (--quick, --smoke: 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per process (default 10, --quick 3)")
    ap.add_argument("--warmup", type=int, default=None, help="suite_case warm-up steps (default 3, as step_case's; --quick 1): the torch "
                         "steps reach their steady time after 3-4 steps (allocator pools, oneDNN primitives)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="each process times more than --steps steps until they add up to this many seconds "
                         "(default 1.0; --quick, --smoke: 0): short cases get as steady a median as long ones")
    ap.add_argument("--pairs", type=int, default=None,
                    help="ort_pair's pairs of alternating blocks (default 30; --quick, --smoke: --steps): on "
                         "this machine single blocks of 0.05 s differed up to 2x, so the median needs many")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--networks", default=None,
                    help="comma list of networks to run (default: all; --smoke: the suite_networks ones)")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--cache-dir", default=None, help="keep the ONNX exports here (default: a temp dir, removed)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    quick = a.quick or a.smoke
    a.rounds = a.rounds or (1 if quick else 3)
    a.steps = a.steps or (1 if a.smoke else 3 if a.quick else 10)
    a.warmup = a.warmup if a.warmup is not None else (1 if quick else 3)
    a.min_time = a.min_time if a.min_time is not None else (0.0 if quick else 1.0)
    a.pairs = a.pairs if a.pairs is not None else (a.steps if quick else 30)
    known = list(dict.fromkeys(n for n, _, _ in CASES))
    wanted = a.networks.split(",") if a.networks else [n for n in known if not (a.smoke and n in STEP_CASE_NETWORKS)]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        ap.error(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(known)}")
    cases = [c for c in CASES if c[0] in wanted]
    if quick:  # the first case of each network
        cases = [c for i, c in enumerate(cases) if c[0] not in [d[0] for d in cases[:i]]]
    if a.smoke:
        cases = [(n, 2, SMOKE_SIDE) for n, _, _ in cases]
    state = {"before": "skipped (--smoke)"} if a.smoke else {"before": machine_state()}
    results = []
    with tempfile.TemporaryDirectory(prefix="dlbatch_suite_") as tmp:
        cache_dir = Path(a.cache_dir or tmp)
        smoke = {}
        if a.smoke:
            suite_nets = [n for n, _, _ in cases if n not in STEP_CASE_NETWORKS]
            smoke = smoke_records(suite_nets, 2, SMOKE_SIDE, a, cache_dir) if suite_nets else {}
        for network, batch, side in cases:
            results.append(run_case_rounds(network, batch, side, a, cache_dir, smoke.get(network)))
    state["after"] = "skipped (--smoke)" if a.smoke else machine_state()
    summary = {"mode": "smoke" if a.smoke else "quick" if a.quick else "full",
               "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores",
               "threads": a.threads, "rounds": a.rounds, "steps": a.steps, "warmup": a.warmup, "min_time_s": a.min_time,
               "ort_pairs": a.pairs,
               "machine_state": state, "cases": results, "targets": check_targets(results),
               "elapsed_s": round(time.perf_counter() - t0, 1)}
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    (out / "suite.md").write_text(table)
    print("\n" + table)
    print(f"(written: {out / 'suite.json'}, {out / 'suite.md'})")


if __name__ == "__main__":
    main()

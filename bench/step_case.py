"""One benchmark case in its own process (thread pools of numpy and torch interfere).

Prints one JSON object: median step time over >= 20 timed steps after warm-up, and memory.

Memory: after everything is set up (model, data, optimizer/session) the peak-RSS counter is
reset (Linux /proc/self/clear_refs) and the baseline is the RSS at that point; the peak step
memory is the highest RSS during the warm-up and timed steps minus that baseline. So a
transient peak during setup (imports, session creation) is not charged to the steps, while
everything the training loop keeps or caches (solver state created at the first step, buffer
pools) is charged equally to every implementation. Where clear_refs is unavailable the old
method (ru_maxrss minus the RSS before the first step) is used and named in the record.
Both the numpy backend and torch run with --threads threads; onnxruntime with that many
intra-op threads. dlbatch inference and onnxruntime inference both include dlbatch's encoding
of the samples into the network input.

--model classification (default): random float images with image_label_id, --classes 10.
--model segmentation: dlbatch.data.segmentation_samples (background 0 + --classes - 1 shapes,
default 4 classes), preprocessed by preprocess_dl_samples; every implementation trains on the
same images and label images (the hand-written loop on the label images as N x H x W class
indices). Inference (numpy_infer, ort_infer) returns the N x K x H x W logits, without decoding.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """Peak RSS since the last reset_peak() (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def samples(n, side, channels, k, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": (rng.standard_normal((side, side, channels)) * 60).astype(np.float32),
             "image_label_id": int(i % k)} for i in range(n)]


def segmentation_data(n, side, channels, k, seed=0):
    """Synthetic shapes (class ids 0..k-1, 0 the background), preprocessed for a model of that
    size (a throw-away numpy-backend model: preprocessing depends only on its image parameters)."""
    import dlbatch
    import dlbatch.data
    raw = dlbatch.data.segmentation_samples(n, height=side, width=side, channels=channels,
                                            class_ids=range(1, k), background_id=0, seed=seed)
    model = dlbatch.create_dl_model("segmentation", backbone="compact", class_ids=list(range(k)),
                                    image_dimensions=[side, side, channels], batch_size=n)
    return dlbatch.preprocess_dl_samples(raw, model)


def timed(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, choices=["numpy_train", "torch_train", "handwritten_train",
                                                      "numpy_infer", "torch_infer", "handwritten_infer",
                                                      "ort_infer"])
    ap.add_argument("--model", default="classification", choices=["classification", "segmentation"])
    ap.add_argument("--backbone", default="compact")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=None, help="default 10 (classification), 4 (segmentation)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("DLBATCH_NUM_THREADS", str(a.threads))  # before dlbatch is imported

    segmentation = a.model == "segmentation"
    if a.classes is None:
        a.classes = 4 if segmentation else 10
    if segmentation:
        data = segmentation_data(a.batch, a.side, a.channels, a.classes)
        label_key = "segmentation_image"
    else:
        data = samples(a.batch, a.side, a.channels, a.classes)
        label_key = "image_label_id"
    impl = a.impl
    record = {"impl": impl, "backbone": a.backbone, "batch": a.batch, "side": a.side, "device": a.device,
              "threads": a.threads}
    if segmentation:  # classification records keep their earlier form
        record = {"model": a.model, **record}
    if impl.startswith("handwritten"):
        import torch
        torch.set_num_threads(a.threads)
        from handwritten_torch import HandwrittenLoop
        loop = HandwrittenLoop(a.backbone, a.channels, a.classes, device=a.device, model=a.model)
        # np.stack keeps the HWC memory of the images: x is NCHW with channels_last strides, so
        # oneDNN runs the whole network channels_last (its fastest CPU layout: 77 against 90 ms
        # for compact's training step in contiguous NCHW)
        x = torch.tensor(np.stack([s["image"].transpose(2, 0, 1) for s in data]), device=a.device)
        y = torch.tensor(np.stack([np.asarray(s[label_key], dtype=np.int64) for s in data]), device=a.device)
        sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
        fn = (lambda: (loop.step(x, y), sync())) if impl.endswith("train") else (lambda: (loop.infer(x), sync()))
    else:
        import dlbatch
        backend = "numpy" if impl.startswith("numpy") or impl == "ort_infer" else "torch"
        if backend == "torch":
            import torch
            torch.set_num_threads(a.threads)
        model = dlbatch.create_dl_model(a.model, backbone=a.backbone, backend=backend,
                                        device=a.device if backend == "torch" else "cpu",
                                        class_ids=list(range(a.classes)),
                                        image_dimensions=[a.side, a.side, a.channels], batch_size=a.batch,
                                        learning_rate=0.01, momentum=0.9, weight_prior=1e-4)
        if impl.endswith("train"):
            fn = lambda: dlbatch.train_dl_model_batch(model, data)
        elif impl == "ort_infer":
            import onnxruntime as ort
            path = Path(tempfile.mkdtemp()) / "model.onnx"
            dlbatch.write_dl_model(model, path)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = a.threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            outputs = [model.meta["logits"]] if segmentation else None

            def fn():  # the same encoding of the samples that dlbatch's own inference does
                enc = model.model_type.encode(data, model.hyperparameters, model.meta, labels=False, dtype="float32")
                return sess.run(outputs, {name: next(iter(enc.inputs.values()))})
        else:
            from dlbatch.core.infer import raw_outputs
            fn = lambda: raw_outputs(model, data)
    gc.collect()
    method = "VmHWM since setup" if reset_peak() else "ru_maxrss"
    before = rss_mb()
    times = timed(fn, a.steps, a.warmup)
    record.update(median_s=statistics.median(times), min_s=min(times), steps=len(times),
                  peak_step_mem_mb=max(0.0, peak_mb() - before),
                  resident_growth_mb=rss_mb() - before, mem_method=method)
    print(json.dumps(record))


if __name__ == "__main__":
    main()

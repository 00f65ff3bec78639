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

Implementations: numpy_train, torch_train (dlbatch's train step on that backend),
handwritten_train / handwritten_infer (handwritten_torch.py: the same network in plain PyTorch),
numpy_infer / torch_infer (dlbatch's inference forward pass, raw_outputs), dlbatch_ort_infer
(the same call after set_dl_model_param(model, "backend", "onnxruntime"), its session built
before the steps), ort_infer (a raw onnxruntime session on the file write_dl_model wrote).
--layout (hand-written loop only): nchw (contiguous NCHW batch and module), channels_last (both
in channels_last memory) or both (default): each layout in its own process, the record is the
faster one's ("layout" names it), with "layouts" giving each one's times and memory.

--model classification (default): random float images with image_label_id, --classes 10.
--model segmentation: dlbatch.data.segmentation_samples (background 0 + --classes - 1 shapes,
default 4 classes), preprocessed by preprocess_dl_samples; every implementation trains on the
same images and label images (the hand-written loop on the label images as N x H x W class
indices). Inference (numpy_infer, ort_infer) returns the N x K x H x W logits, without decoding.
--model detection: dlbatch.data.detection_samples (rectangle1 boxes of --classes shape classes,
default 3, class ids 1..K), preprocessed; the detection model type with capacity medium, levels
2..4, 9 anchors per location. Every training step includes the anchor matching and box coding
of the batch (dlbatch's numpy target code, handwritten_torch.DetectionTargets for the
hand-written loop: the same code and the same targets for all three trainers). Inference
(numpy_infer, ort_infer) returns the raw heads (class logits N x anchors x K, box deltas
N x anchors x 4) without decoding. --impl postprocess times the model type's decode (sigmoid,
box decoding, per-level top-k, clipping, per-class NMS, best max_num_detections) of the
batch's stored raw outputs, those of a partly trained network (detection_outputs); the record
adds per_image_s and the mean candidates and detections per image.
--model detection --instance-type rectangle2: the oriented instance type on
detection_samples(instance_type="rectangle2") (elongated shapes, direction ignored): the model
options RECTANGLE2 (anchor angles -pi/4, 0, pi/4, pi/2, aspect ratio length1 / length2 2.5, 2
subscales: 8 anchors per location), box deltas N x anchors x 5 (the angle last), matching and
NMS with the exact rotated IoU; the hand-written Detector gets box_params=5 and its targets
come from the same numpy code (DetectionTargets with the oriented anchors). The record adds
"instance_type": "rectangle2" (rectangle1 records are unchanged).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import measure  # noqa: E402

LAYOUTS = ("nchw", "channels_last")  # the hand-written loop's memory layouts (--layout)
# the oriented detection case's model options (besides capacity and levels)
RECTANGLE2 = {"instance_type": "rectangle2", "ignore_direction": True,
              "anchor_angles": [-np.pi / 4, 0.0, np.pi / 4, np.pi / 2], "anchor_aspect_ratios": [2.5],
              "anchor_num_subscales": 2}


def detection_options(instance_type: str = "rectangle1") -> dict:
    """The anchor and instance-type options of the bench's detection model (none for rectangle1:
    the model type's defaults, 3 subscales x ratios 1, 2, 0.5)."""
    if instance_type == "rectangle1":
        return {}
    if instance_type == "rectangle2":
        return dict(RECTANGLE2)
    raise ValueError(f"unknown instance type {instance_type!r}")


def handwritten_detection(instance_type: str = "rectangle1") -> tuple[dict, dict]:
    """(Detector options, DetectionTargets options) matching detection_options(instance_type)."""
    if instance_type == "rectangle1":
        return {}, {}
    opts = detection_options(instance_type)
    per_location = opts["anchor_num_subscales"] * len(opts["anchor_aspect_ratios"]) * len(opts["anchor_angles"])
    return ({"anchors_per_location": per_location, "box_params": 5},
            {"num_subscales": opts["anchor_num_subscales"], "aspect_ratios": tuple(opts["anchor_aspect_ratios"]),
             "angles": tuple(opts["anchor_angles"]), "ignore_direction": opts["ignore_direction"]})


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


def detection_data(n, side, channels, k, seed=0, instance_type="rectangle1"):
    """Synthetic scenes with 0-4 boxes of classes 1..k each (rectangle2: elongated shapes,
    none directed), preprocessed for a model of that size (a throw-away compact detection
    model: preprocessing depends only on the image parameters and the instance type)."""
    import dlbatch
    import dlbatch.data
    raw = dlbatch.data.detection_samples(n, height=side, width=side, channels=channels,
                                         class_ids=range(1, k + 1), seed=seed, instance_type=instance_type)
    model = dlbatch.create_dl_model("detection", backbone="compact", class_ids=list(range(1, k + 1)),
                                    image_dimensions=[side, side, channels], batch_size=n,
                                    **detection_options(instance_type))
    return dlbatch.preprocess_dl_samples(raw, model)


def detection_boxes(data, model):
    """Per image the (n_i, P) boxes in input pixels (P = 4 rectangle1, 5 rectangle2) and their
    class indices, as dlbatch reads them."""
    from dlbatch.models.detection.model_type import _class_index, _geometry
    from dlbatch.models.detection.sample_boxes import read_boxes
    hp = model.hyperparameters
    read = [read_boxes(s, i, _geometry(hp), hp, _class_index(hp)) for i, s in enumerate(data)]
    return [r[0] for r in read], [r[1] for r in read]


def detection_outputs(model, data, seed=0) -> dict:
    """Raw head outputs as a partly trained network gives them: from the batch's targets, each
    positive anchor's class logit ~ N(2, 1) (probability ~0.88), every other (anchor, class)
    logit ~ N(-4.6, 1.5) (probability ~0.01; about 0.1% pass min_confidence 0.5, a few dozen
    false candidates per 128x128 image, a few hundred per 512x512 image); box deltas the target
    deltas + N(0, 0.1) noise (background anchors: the noise around the anchor)."""
    hp, meta = model.hyperparameters, model.meta
    enc = model.model_type.encode(data, hp, meta, labels=True, dtype="float32")
    classes, deltas = enc.targets["class"].target, enc.targets["box"].target
    rng = np.random.default_rng(seed)
    k = len(hp["class_ids"])
    logits = rng.normal(-4.6, 1.5, (*classes.shape, k))
    n, a = np.nonzero(classes >= 0)
    logits[n, a, classes[n, a]] = rng.normal(2.0, 1.0, len(n))
    deltas = deltas + rng.normal(0.0, 0.1, deltas.shape)
    return {meta["class_logits"]: logits.astype(np.float32), meta["box_deltas"]: deltas.astype(np.float32)}


def both_layouts(argv: list[str]) -> dict:
    """--layout both: this script once per layout, each in its own process (in one process the
    second loop would reuse the first's allocator pools and oneDNN caches: less memory and
    warmer, whichever layout came second); the faster layout's record, with "layouts" giving
    each layout's median_s, min_s and peak_step_mem_mb."""
    import subprocess
    found = {}
    for layout in LAYOUTS:
        proc = subprocess.run([sys.executable, __file__, *argv, "--layout", layout], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"step_case.py --layout {layout} failed:\n{proc.stderr.strip()}")
        found[layout] = json.loads(proc.stdout.strip().splitlines()[-1])
    best = min(found, key=lambda k: found[k]["median_s"])
    layouts = {k: {f: r[f] for f in ("median_s", "min_s", "peak_step_mem_mb")} for k, r in found.items()}
    return {**found[best], "layouts": layouts}


def handwritten_fn(a, data, label_key, class_ids, levels, extra, layout):
    """The hand-written PyTorch loop's step (or inference) in one memory layout: "nchw" feeds
    contiguous NCHW tensors to a contiguous module (what a newcomer writes); "channels_last" puts
    the module and the batch in channels_last memory (oneDNN's fastest CPU layout: the images'
    HWC memory seen as NCHW, as np.stack of transposed images gives it)."""
    import torch
    torch.set_num_threads(a.threads)
    x = torch.tensor(np.stack([s["image"].transpose(2, 0, 1) for s in data]), device=a.device)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    if a.model == "detection":
        import dlbatch
        from handwritten_torch import DetectionLoop, DetectionTargets
        network, target_options = handwritten_detection(a.instance_type)
        loop = DetectionLoop(a.backbone, a.channels, a.classes, device=a.device, **levels, **network)
        loop.net.to(memory_format=fmt)
        reader = dlbatch.create_dl_model("detection", backbone="compact", class_ids=class_ids,
                                         image_dimensions=[a.side, a.side, a.channels], batch_size=a.batch, **extra)
        boxes, labels = detection_boxes(data, reader)  # parsing the sample dicts is not timed
        targets = DetectionTargets(a.side, a.side, device=a.device, **target_options)
        if a.impl.endswith("train"):  # matching and box coding inside the step, as dlbatch's step does
            return lambda: (loop.step(x, targets(boxes, labels)), sync())
        return lambda: (loop.infer(x), sync())
    from handwritten_torch import HandwrittenLoop
    loop = HandwrittenLoop(a.backbone, a.channels, a.classes, device=a.device, model=a.model)
    loop.net.to(memory_format=fmt)
    y = torch.tensor(np.stack([np.asarray(s[label_key], dtype=np.int64) for s in data]), device=a.device)
    run = loop.step if a.impl.endswith("train") else (lambda x, y: loop.infer(x))
    if a.precision == "bfloat16":
        plain = run

        def run(x, y):
            with torch.autocast(device_type=torch.device(a.device).type, dtype=torch.bfloat16):
                return plain(x, y)
    return lambda: (run(x, y), sync())


def ort_session_fn(model, data, threads: int, outputs, path=None):
    """A raw onnxruntime session on the ONNX file `path` (default: the file write_dl_model
    writes of `model`), called on the same encoding of the samples that dlbatch's own inference
    does."""
    import onnxruntime as ort
    if path is None:
        import dlbatch
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        dlbatch.write_dl_model(model, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def fn():
        enc = model.model_type.encode(data, model.hyperparameters, model.meta, labels=False, dtype="float32")
        return sess.run(outputs, {name: next(iter(enc.inputs.values()))})
    return fn


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True, choices=["numpy_train", "torch_train", "handwritten_train",
                                                      "numpy_infer", "torch_infer", "handwritten_infer",
                                                      "dlbatch_ort_infer", "ort_infer", "ort_pair",
                                                      "postprocess"])
    ap.add_argument("--model", default="classification", choices=["classification", "segmentation", "detection"])
    ap.add_argument("--backbone", default="compact")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=None,
                    help="default 10 (classification), 4 (segmentation, background included), 3 (detection)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=0,
                    help="ort_pair: pairs of alternating blocks (default: --steps)")
    ap.add_argument("--min-time", type=float, default=0.0,
                    help="time more than --steps steps until they add up to this many seconds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                    help="bfloat16: dlbatch's torch backend with precision='bfloat16', the hand-written "
                         "loop under torch.autocast(bfloat16) (float32 weights both)")
    ap.add_argument("--layout", default="both", choices=[*LAYOUTS, "both"],
                    help="the hand-written loop's memory layout: contiguous nchw, channels_last (module and "
                         "batch), or both in turn, reporting the faster (default)")
    ap.add_argument("--instance-type", default="rectangle1", choices=["rectangle1", "rectangle2"],
                    help="detection only: axis-parallel (rectangle1) or oriented (rectangle2) boxes")
    a = ap.parse_args(argv)
    if a.impl.startswith("handwritten") and a.layout == "both":
        print(json.dumps(both_layouts(sys.argv[1:] if argv is None else list(argv))))
        return
    os.environ.setdefault("DLBATCH_NUM_THREADS", str(a.threads))  # before dlbatch is imported

    segmentation, detection = a.model == "segmentation", a.model == "detection"
    if a.classes is None:
        a.classes = {"segmentation": 4, "detection": 3}.get(a.model, 10)
    if a.impl == "postprocess" and not detection:
        ap.error("--impl postprocess needs --model detection")
    if a.instance_type != "rectangle1" and not detection:
        ap.error("--instance-type needs --model detection")
    if a.precision != "float32" and (a.impl not in ("torch_train", "torch_infer", "handwritten_train",
                                                     "handwritten_infer") or
                                     (detection and a.impl.startswith("handwritten"))):
        ap.error("--precision bfloat16 needs --impl torch_train/torch_infer, or handwritten_train/"
                 "handwritten_infer for classification or segmentation")
    class_ids = list(range(1, a.classes + 1)) if detection else list(range(a.classes))
    levels = {"capacity": "medium", "min_level": 2, "max_level": 4} if detection else {}
    extra = {**levels, **detection_options(a.instance_type)} if detection else {}
    if segmentation:
        data = segmentation_data(a.batch, a.side, a.channels, a.classes)
        label_key = "segmentation_image"
    elif detection:
        data = detection_data(a.batch, a.side, a.channels, a.classes, instance_type=a.instance_type)
        label_key = None
    else:
        data = samples(a.batch, a.side, a.channels, a.classes)
        label_key = "image_label_id"
    impl = a.impl
    record = {"impl": impl, "backbone": a.backbone, "batch": a.batch, "side": a.side, "device": a.device,
              "threads": a.threads}
    if segmentation or detection:  # classification records keep their earlier form
        record = {"model": a.model, **record}
    if a.instance_type != "rectangle1":  # rectangle1 detection records keep theirs
        record = {"model": a.model, "instance_type": a.instance_type, **record}
    if a.precision != "float32":  # float32 records keep their form
        record["precision"] = a.precision
    if impl.startswith("handwritten"):
        fn = handwritten_fn(a, data, label_key, class_ids, levels, extra, a.layout)
        record["layout"] = a.layout
    else:
        import dlbatch
        backend = "numpy" if impl.startswith("numpy") or impl in ("dlbatch_ort_infer", "ort_infer", "ort_pair",
                                                                  "postprocess") else "torch"
        if backend == "torch":
            import torch
            torch.set_num_threads(a.threads)
        model = dlbatch.create_dl_model(a.model, backbone=a.backbone, backend=backend,
                                        device=a.device if backend == "torch" else "cpu",
                                        class_ids=class_ids,
                                        image_dimensions=[a.side, a.side, a.channels], batch_size=a.batch,
                                        learning_rate=0.01, momentum=0.9, weight_prior=1e-4,
                                        precision=a.precision, **extra)
        if impl.endswith("train"):
            fn = lambda: dlbatch.train_dl_model_batch(model, data)
        elif impl in ("ort_infer", "ort_pair"):
            fn = ort_session_fn(model, data, a.threads, [model.meta["logits"]] if segmentation else None)
        elif impl == "postprocess":
            from dlbatch.core.preprocess import SampleContext
            hp = model.hyperparameters
            outputs = detection_outputs(model, data)
            contexts = [SampleContext.of(s, hp, i) for i, s in enumerate(data)]
            fn = lambda: model.model_type.decode(outputs, hp, model.meta, contexts)
            scores = outputs[model.meta["class_logits"]]
            found = fn()
            record.update(candidates_per_image=float((scores > 0).sum() / a.batch),  # probability > 0.5
                          detections_per_image=sum(len(r["bbox_confidence"]) for r in found) / a.batch)
        if impl in ("numpy_infer", "torch_infer", "dlbatch_ort_infer", "ort_pair"):
            from dlbatch.core.infer import raw_outputs
            paired = fn if impl == "ort_pair" else None
            fn = lambda: raw_outputs(model, data)
            if impl in ("dlbatch_ort_infer", "ort_pair"):
                import onnxruntime as ort
                dlbatch.set_dl_model_param(model, "backend", "onnxruntime")
                record["onnxruntime"] = ort.__version__
                fn()  # builds the session (as ort_infer's is built before the steps)
    # ort_pair: dlbatch's onnxruntime call against the raw session, in one process
    record.update(measure(fn, a.steps, a.warmup, a.min_time, paired_with=paired if impl == "ort_pair" else None,
                          pairs=a.pairs))
    if impl == "postprocess":
        record.update(per_image_s=record["median_s"] / a.batch)
    print(json.dumps(record))


if __name__ == "__main__":
    main()

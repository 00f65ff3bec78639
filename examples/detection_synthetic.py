"""Train a detection model on dlbatch's synthetic scenes and report held-out COCO AP.

    python examples/detection_synthetic.py --backbone compact --side 64 --steps 3000
    python examples/detection_synthetic.py --backbone resnet18 --side 128 --backend torch
    python examples/detection_synthetic.py --backbone classifier --side 64   # ONNX classifier first
    python examples/detection_synthetic.py --solver sgd --lr 0.01

The scenes (dlbatch.data.detection_samples) hold 0-4 shapes of `--classes` classes with their
axis-aligned boxes (rectangle1). The model is the detection model type (feature pyramid on
levels --min-level..--max-level, RetinaNet heads, --capacity); sides must be multiples of
2^max_level. A pool of --train-samples scenes is drawn once and batches are sampled from it;
200 other scenes are held out.

Solver: Adam at --lr (default 1e-3) by default, or HALCON's SGD with momentum 0.9
(--solver sgd, default lr 0.01); either way the learning rate drops to a tenth for the last
20% of the steps. `--backbone classifier` first trains a resnet18 classifier on single-shape
images (which shape is in the image), writes it to ONNX and builds the detection model on
that file, so the pyramid starts from trained features.

Evaluation runs with min_confidence --min-confidence (default 0.05, so the precision-recall
curve reaches low scores, as COCO evaluations do; the model's default is 0.5). One JSON line per
evaluation: COCO mean_ap (AP@[.50:.95]), ap_50, ap_75, class_ap and class_ap_50 per class id,
the last step's losses, and timings (setup, training, evaluation, ms per training step).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import dlbatch
from dlbatch.data import detection_samples

DEFAULT_LR = {"adam": 1e-3, "sgd": 0.01}


def train_classifier_file(args, class_ids, folder) -> str:
    """A resnet18 classifier trained to name the one shape in an image, written to ONNX."""
    model = dlbatch.create_dl_model("classification", backbone="resnet18", class_ids=list(class_ids),
                                    image_dimensions=[args.side, args.side, 3], batch_size=args.batch,
                                    learning_rate=0.01, momentum=0.9, weight_prior=1e-5, backend=args.backend)
    n = max(4 * args.batch, args.classifier_steps * args.batch // 4)
    raw = detection_samples(n, height=args.side, width=args.side, class_ids=class_ids, seed=11,
                            min_objects=1, max_objects=1)
    data = dlbatch.preprocess_dl_samples([{"image": s["image"], "image_label_id": int(s["bbox_label_id"][0])}
                                          for s in raw], model)
    rng = np.random.default_rng(0)
    for _ in range(args.classifier_steps):
        model.train_batch([data[i] for i in rng.choice(len(data), args.batch, replace=False)])
    path = os.path.join(folder, "classifier.onnx")
    dlbatch.write_dl_model(model, path)
    return path


def rounded(values) -> list:
    return [None if v != v else round(v, 4) for v in values]  # NaN: a class without ground truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="compact", help="compact, resnet18 or classifier")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--classes", type=int, default=3, help="shape classes (class ids 1..classes)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--solver", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=None, help="default 1e-3 (adam), 0.01 (sgd)")
    p.add_argument("--weight-prior", type=float, default=1e-5)
    p.add_argument("--capacity", default="medium", choices=["high", "medium", "low"])
    p.add_argument("--min-level", type=int, default=2)
    p.add_argument("--max-level", type=int, default=4)
    p.add_argument("--min-confidence", type=float, default=0.05)
    p.add_argument("--classifier-steps", type=int, default=600)
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--eval-samples", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    lr = DEFAULT_LR[args.solver] if args.lr is None else args.lr
    class_ids = tuple(range(1, args.classes + 1))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        backbone = args.backbone
        if backbone == "classifier":
            backbone = train_classifier_file(args, class_ids, folder)
        model = dlbatch.create_dl_model("detection", backbone=backbone, class_ids=list(class_ids),
                                        image_dimensions=[args.side, args.side, 3], batch_size=args.batch,
                                        solver_type=args.solver, learning_rate=lr, momentum=0.9,
                                        weight_prior=args.weight_prior, capacity=args.capacity,
                                        min_level=args.min_level, max_level=args.max_level,
                                        min_confidence=args.min_confidence, backend=args.backend)
    make = lambda n, seed: dlbatch.preprocess_dl_samples(  # noqa: E731
        detection_samples(n, height=args.side, width=args.side, class_ids=class_ids, seed=seed), model)
    train, held_out = make(args.train_samples, args.seed + 1), make(args.eval_samples, args.seed + 2)
    setup = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    train_time = eval_time = 0.0
    step_down = int(args.steps * 0.8) + 1
    for step in range(1, args.steps + 1):
        if step == step_down:  # one step-down of the learning rate for the last 20%
            model.set_param("learning_rate", lr / 10)
        t0 = time.perf_counter()
        losses = model.train_batch([train[i] for i in rng.choice(len(train), args.batch, replace=False)])
        train_time += time.perf_counter() - t0
        if step % args.eval_every == 0 or step == args.steps:
            t0 = time.perf_counter()
            m = dlbatch.evaluate_dl_model(model, held_out)
            eval_time += time.perf_counter() - t0
            print(json.dumps({"backbone": args.backbone, "backend": args.backend, "solver": args.solver,
                              "side": args.side, "classes": args.classes, "batch": args.batch, "step": step,
                              "learning_rate": model.get_param("learning_rate"),
                              "ap_50": round(m["ap_50"], 4), "mean_ap": round(m["mean_ap"], 4),
                              "ap_75": round(m["ap_75"], 4),
                              "class_ap": dict(zip(map(str, class_ids), rounded(m["class_ap"]))),
                              "class_ap_50": dict(zip(map(str, class_ids), rounded(m["class_ap_50"]))),
                              "loss_focal": round(losses["loss_focal"], 4),
                              "loss_huber": round(losses["loss_huber"], 4),
                              "train_seconds": round(train_time, 1), "ms_per_step": round(1000 * train_time / step, 1),
                              "eval_seconds": round(eval_time, 1), "setup_seconds": round(setup, 1)}), flush=True)


if __name__ == "__main__":
    main()

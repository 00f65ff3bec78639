"""Train a detection model on dlbatch's synthetic scenes and report held-out COCO AP.

    python examples/detection_synthetic.py --backbone compact --side 64 --steps 3000
    python examples/detection_synthetic.py --backbone resnet18 --side 128 --backend torch
    python examples/detection_synthetic.py --backbone classifier --side 64   # ONNX classifier first
    python examples/detection_synthetic.py --solver sgd --lr 0.01
    python examples/detection_synthetic.py --instance-type rectangle2 --side 64            # oriented boxes
    python examples/detection_synthetic.py --instance-type rectangle2 --directed --side 64  # with a front

The scenes (dlbatch.data.detection_samples) hold 0-4 shapes of `--classes` classes with their
axis-aligned boxes (rectangle1). The model is the detection model type (feature pyramid on
levels --min-level..--max-level, RetinaNet heads, --capacity); sides must be multiples of
2^max_level. A pool of --train-samples scenes is drawn once and batches are sampled from it;
200 other scenes are held out.

--instance-type rectangle2: the scenes hold elongated shapes (rectangle, ellipse, pointed
hexagon by class; length1 / length2 about 1.8..3) with oriented boxes (bbox_row, bbox_col,
bbox_phi, bbox_length1, bbox_length2), learned with oriented anchors: aspect ratio
length1 / length2 2.5, 2 subscales, --anchor-angles angles (default 4: -pi/4, 0, pi/4, pi/2,
evenly over the half circle, as phi and phi + pi are the same box). --directed gives every class
a front (a contrasting cap at its +d1 end, phi in (-pi, pi]) and trains with
ignore_direction=False and the anchor angles evenly over the full circle (default 8: multiples
of pi/4 in (-pi, pi]). The COCO AP uses the exact rotated IoU, which does not see the direction
(a box and its reverse have IoU 1), so directed runs also report direction_accuracy: of the
held-out detections with confidence >= 0.5 matched to a ground-truth box of their class
(IoU >= 0.5, by descending confidence), the share whose phi is within pi/2 of the box's.

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
import math
import tempfile
import time

import numpy as np

import dlbatch
from classifier_backbone import train_classifier_file  # examples/ is on sys.path when run as a script
from dlbatch.data import detection_samples

DEFAULT_LR = {"adam": 1e-3, "sgd": 0.01}
RECTANGLE2_ANCHORS = {"anchor_aspect_ratios": [2.5], "anchor_num_subscales": 2}  # the shapes' length1 / length2


def anchor_angles(count: int, directed: bool) -> list[float]:
    """`count` angles evenly over phi's range: (-pi/2, pi/2] (direction ignored; 4 gives -pi/4, 0,
    pi/4, pi/2) or (-pi, pi] (directed; 8 gives the multiples of pi/4)."""
    period = 2 * math.pi if directed else math.pi
    return [-period / 2 + period * (k + 1) / count for k in range(count)]


def instance_options(args, class_ids) -> tuple[dict, dict]:
    """(model options, detection_samples options) of the instance type."""
    if args.instance_type == "rectangle1":
        return {}, {}
    count = args.anchor_angles or (8 if args.directed else 4)
    model = {"instance_type": "rectangle2", "ignore_direction": not args.directed,
             "anchor_angles": anchor_angles(count, args.directed), **RECTANGLE2_ANCHORS}
    data = {"instance_type": "rectangle2", "directed_class_ids": tuple(class_ids) if args.directed else ()}
    return model, data


def direction_accuracy(model, samples, min_score: float = 0.5) -> tuple[float | None, int]:
    """(share of matched detections that point the ground truth's way, matched detections): each
    detection with confidence >= min_score, by descending confidence, takes the free ground-truth
    box of its class with the highest rotated IoU >= 0.5; it points the right way when its phi is
    within pi/2 of the box's (a reversed box, phi + pi, has the same IoU)."""
    from dlbatch.models.detection.rectangle2 import wrap_angle
    from dlbatch.models.detection.rotated_iou import rotated_pairwise_iou
    keys = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")
    matched = right = 0
    for result, sample in zip(dlbatch.apply_dl_model(model, samples), samples):
        gt = np.stack([np.asarray(sample[k], dtype=np.float64).reshape(-1) for k in keys], axis=1)
        gt_class = np.asarray(sample["bbox_label_id"]).reshape(-1)
        keep = np.flatnonzero(np.asarray(result["bbox_confidence"]) >= min_score)
        keep = keep[np.argsort(-np.asarray(result["bbox_confidence"])[keep], kind="stable")]
        det = np.stack([np.asarray(result[k], dtype=np.float64)[keep] for k in keys], axis=1)
        if not len(det) or not len(gt):
            continue
        iou = rotated_pairwise_iou(det, gt)
        iou[np.asarray(result["bbox_class_id"])[keep][:, None] != gt_class[None, :]] = 0.0
        free = np.ones(len(gt), dtype=bool)
        for i in range(len(det)):
            j = int(np.argmax(np.where(free, iou[i], -1.0)))
            if free[j] and iou[i, j] >= 0.5:
                free[j] = False
                matched += 1
                right += abs(float(wrap_angle(det[i, 2] - gt[j, 2], ignore_direction=False))) < math.pi / 2
    return (right / matched if matched else None), matched


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
    p.add_argument("--instance-type", default="rectangle1", choices=["rectangle1", "rectangle2"],
                   help="axis-parallel boxes (rectangle1) or oriented boxes of elongated shapes (rectangle2)")
    p.add_argument("--directed", action="store_true",
                   help="rectangle2: objects with a front; ignore_direction=False, anchor angles over the full circle")
    p.add_argument("--anchor-angles", type=int, default=None,
                   help="rectangle2: number of anchor angles (default 4, --directed 8)")
    args = p.parse_args()
    if args.instance_type != "rectangle2" and (args.directed or args.anchor_angles is not None):
        p.error("--directed and --anchor-angles need --instance-type rectangle2")
    if args.anchor_angles is not None and args.anchor_angles < 1:
        p.error("--anchor-angles must be >= 1")
    lr = DEFAULT_LR[args.solver] if args.lr is None else args.lr
    class_ids = tuple(range(1, args.classes + 1))
    model_options, data_options = instance_options(args, class_ids)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        backbone = args.backbone
        if backbone == "classifier":
            backbone = train_classifier_file(folder, class_ids, side=args.side, batch=args.batch,
                                             steps=args.classifier_steps, learning_rate=0.01, backend=args.backend,
                                             **data_options)
        model = dlbatch.create_dl_model("detection", backbone=backbone, class_ids=list(class_ids),
                                        image_dimensions=[args.side, args.side, 3], batch_size=args.batch,
                                        solver_type=args.solver, learning_rate=lr, momentum=0.9,
                                        weight_prior=args.weight_prior, capacity=args.capacity,
                                        min_level=args.min_level, max_level=args.max_level,
                                        min_confidence=args.min_confidence, backend=args.backend,
                                        **model_options)
    make = lambda n, seed: dlbatch.preprocess_dl_samples(  # noqa: E731
        detection_samples(n, height=args.side, width=args.side, class_ids=class_ids, seed=seed, **data_options),
        model)
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
            direction = direction_accuracy(model, held_out) if args.directed else None
            eval_time += time.perf_counter() - t0
            shape = {} if args.instance_type == "rectangle1" else {
                "instance_type": args.instance_type, "directed": args.directed,
                "anchor_angles": [round(a, 4) for a in model_options["anchor_angles"]]}
            if direction is not None:
                shape.update(direction_accuracy=None if direction[0] is None else round(direction[0], 4),
                             direction_matched=direction[1])
            print(json.dumps({"backbone": args.backbone, "backend": args.backend, "solver": args.solver,
                              "side": args.side, "classes": args.classes, "batch": args.batch, "step": step, **shape,
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

"""Train a segmentation model on dlbatch's synthetic scenes and report held-out measures.

    python examples/segmentation_synthetic.py --backbone compact --side 64 --steps 2000
    python examples/segmentation_synthetic.py --backbone resnet18 --side 64 --backend torch
    python examples/segmentation_synthetic.py --backbone classifier --side 64   # ONNX classifier first

`--backbone classifier` first trains a resnet18 classifier on synthetic single-object images
(which shape is in the image), writes it to an ONNX file and builds the segmentation model on
that file, so the decoder starts from trained features. Prints one JSON line per evaluation.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np

import dlbatch
from classifier_backbone import train_classifier_file  # examples/ is on sys.path when run as a script
from dlbatch.data import segmentation_samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="compact", help="compact, resnet18 or classifier")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--classes", type=int, default=3, help="foreground shape classes")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--classifier-steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--train-samples", type=int, default=4000)
    p.add_argument("--eval-every", type=int, default=500)
    args = p.parse_args()
    class_ids = tuple(range(1, args.classes + 1))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        backbone = args.backbone
        if backbone == "classifier":
            backbone = train_classifier_file(folder, class_ids, side=args.side, batch=args.batch,
                                             steps=args.classifier_steps, learning_rate=args.lr, backend=args.backend)
        model = dlbatch.create_dl_model("segmentation", backbone=backbone, class_ids=[0, *class_ids],
                                        image_dimensions=[args.side, args.side, 3], batch_size=args.batch,
                                        learning_rate=args.lr, momentum=0.9, weight_prior=1e-5, backend=args.backend)
    setup = time.perf_counter() - start
    make = lambda n, seed: dlbatch.preprocess_dl_samples(  # noqa: E731
        segmentation_samples(n, height=args.side, width=args.side, class_ids=class_ids, seed=seed), model)
    train, held_out = make(args.train_samples, 1), make(200, 2)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        if step == int(args.steps * 0.75) + 1:  # one step-down of the learning rate for the last quarter
            model.set_param("learning_rate", args.lr / 10)
        model.train_batch([train[i] for i in rng.choice(len(train), args.batch, replace=False)])
        if step % args.eval_every == 0 or step == args.steps:
            m = dlbatch.evaluate_dl_model(model, held_out)
            print(json.dumps({"backbone": args.backbone, "backend": args.backend, "side": args.side,
                              "classes": args.classes, "step": step, "mean_iou": round(m["mean_iou"], 4),
                              "class_iou": [round(x, 4) for x in m["class_iou"]],
                              "pixel_accuracy": round(m["pixel_accuracy"], 4),
                              "train_seconds": round(time.perf_counter() - start, 1),
                              "setup_seconds": round(setup, 1)}), flush=True)


if __name__ == "__main__":
    main()

"""The first hour in two minutes: train each model type briefly on the bundled synthetic scenes
(`dlbatch.data`) on the numpy backend, print what each learned on held-out images, and write
overlay PNGs of real predictions into a folder a newcomer can open.

    python -m dlbatch.tour                 # about two minutes on two cores; PNGs in ./dlbatch_tour
    python -m dlbatch.tour --quick         # a few steps each: checks that everything runs
    DLBATCH_TOUR_QUICK=1 python -m dlbatch.tour

Each lesson is one `create_dl_model`, a loop of `train_dl_model_batch` over random batches with
one late learning-rate drop (HALCON's change strategy), `evaluate_dl_model` on held-out images of
the same generator, and `apply_dl_model` + the model type's `draw_overlay` for the pictures.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import dlbatch
from dlbatch.data import classification_samples, detection_samples, segmentation_samples
from dlbatch.data.families import BARS, BLOBS

QUICK_ENV = "DLBATCH_TOUR_QUICK"
OVERLAYS_PER_LESSON = 4
OVERLAY_SIDE = 160  # overlays are enlarged to about this many pixels


@dataclass(frozen=True)
class Lesson:
    """One model type to train: how to build it, what data it sees and what to report.

    Attributes:
        name: file stem of the lesson's overlays and its key in the summary.
        title: one line printed before training.
        params: keyword arguments of `dlbatch.create_dl_model` (model type under "type").
        data: `data(n, seed)` returns raw samples at the model's image size.
        steps: training steps of the full tour.
        metric: the evaluation measure printed as what the model learned.
        final_learning_rate: learning rate of the last fifth of the steps.
        extra_metrics: further measures printed after `metric`.
        overlay_params: parameters set after the evaluation, for the pictures (a detection model
            is measured with a low `min_confidence`, as AP wants, and drawn with a higher one).
    """

    name: str
    title: str
    params: dict[str, Any]
    data: Callable[[int, int], list[dict]]
    steps: int
    metric: str
    final_learning_rate: float
    extra_metrics: tuple[str, ...] = field(default=())
    overlay_params: dict[str, Any] = field(default_factory=dict)


def lessons(side: int = 64) -> list[Lesson]:
    """The four lessons of the tour: classification, segmentation, detection (rectangle1) and
    oriented detection (rectangle2), all on the `compact` backbone and the numpy backend.

    Args:
        side: image side of the detection lessons (classification and segmentation use half).

    Returns:
        The lessons in the order the tour runs them.
    """
    small = side // 2
    return [
        Lesson("classification", f"classification: which shape is it? ({small}x{small}, 3 classes)",
               dict(type="classification", class_ids=[0, 1, 2], class_names=list(BLOBS[:3]),
                    image_dimensions=[small, small, 3], batch_size=16, solver_type="adam",
                    learning_rate=2e-3),
               lambda n, seed: classification_samples(n, height=small, width=small, seed=seed),
               steps=200, metric="accuracy", final_learning_rate=2e-4,
               extra_metrics=("mean_precision", "mean_recall")),
        Lesson("segmentation", f"segmentation: which pixels belong to a disc? ({small}x{small})",
               dict(type="segmentation", class_ids=[0, 1], class_names=["background", "disc"],
                    image_dimensions=[small, small, 3], batch_size=16, learning_rate=0.05,
                    momentum=0.9, weight_prior=1e-5),
               lambda n, seed: segmentation_samples(n, height=small, width=small, class_ids=(1,), seed=seed),
               steps=300, metric="mean_iou", final_learning_rate=0.005,
               extra_metrics=("pixel_accuracy",)),
        Lesson("detection_rectangle1", f"detection, axis-parallel boxes (rectangle1, {side}x{side})",
               dict(type="detection", class_ids=[1], class_names=["disc"], image_dimensions=[side, side, 3],
                    batch_size=8, solver_type="adam", learning_rate=1e-3, weight_prior=1e-5,
                    min_confidence=0.3),
               lambda n, seed: detection_samples(n, height=side, width=side, class_ids=(1,), seed=seed),
               steps=250, metric="ap_50", final_learning_rate=1e-4, extra_metrics=("mean_ap",),
               overlay_params={"min_confidence": 0.5}),
        Lesson("detection_rectangle2", f"detection, oriented boxes (rectangle2, {side}x{side})",
               dict(type="detection", class_ids=[1], class_names=[BARS[0]], image_dimensions=[side, side, 3],
                    batch_size=8, solver_type="adam", learning_rate=1e-3, weight_prior=1e-5,
                    instance_type="rectangle2", ignore_direction=True,
                    anchor_angles=[-np.pi / 4, 0.0, np.pi / 4, np.pi / 2], anchor_aspect_ratios=[2.5],
                    anchor_num_subscales=2, min_confidence=0.3),
               lambda n, seed: detection_samples(n, height=side, width=side, class_ids=(1,), seed=seed,
                                                 instance_type="rectangle2"),
               steps=300, metric="ap_50", final_learning_rate=1e-4, extra_metrics=("mean_ap",),
               overlay_params={"min_confidence": 0.5}),
    ]


def train_lesson(lesson: Lesson, *, steps: int, num_train: int, num_held_out: int, seed: int = 0,
                 backend: str = "numpy") -> tuple[dlbatch.DLModel, list[dict], dict]:
    """Train one lesson's model and measure it on held-out scenes.

    Args:
        lesson: what to train (see `lessons`).
        steps: number of `train_dl_model_batch` calls.
        num_train: size of the training set the batches are drawn from.
        num_held_out: held-out images (another seed of the same generator).
        seed: seed of the weights and of the batch order.
        backend: compute backend.

    Returns:
        `(model, raw held-out samples, evaluate_dl_model's measures)`.
    """
    params = dict(lesson.params)
    model = dlbatch.create_dl_model(params.pop("type"), backbone="compact", backend=backend, seed=seed, **params)
    train = dlbatch.preprocess_dl_samples(lesson.data(num_train, seed + 1), model)
    held_out_raw = lesson.data(num_held_out, seed + 2)
    batch = model.get_param("batch_size")
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if step == int(steps * 0.8):
            model.set_param("learning_rate", lesson.final_learning_rate)
        dlbatch.train_dl_model_batch(model, [train[i] for i in rng.choice(len(train), batch, replace=False)])
    measures = dlbatch.evaluate_dl_model(model, dlbatch.preprocess_dl_samples(held_out_raw, model))
    return model, held_out_raw, measures


def write_overlays(model: dlbatch.DLModel, raw_samples: list[dict], out_dir: Path, stem: str,
                   scale: int = 1) -> list[Path]:
    """Apply the model to raw samples and write each result drawn over its image as a PNG, plus
    one strip of all of them side by side.

    Args:
        model: a trained model.
        raw_samples: samples whose `image` is uint8 at the model's image size.
        out_dir: folder of the PNGs (created).
        stem: file name prefix.
        scale: each image is enlarged by this integer factor (pixel repetition) before it is
            applied, so that labels and boxes are legible. The model sees the same input (the
            bilinear resize back to its size averages identical pixels) and returns its result in
            the enlarged image's pixels.

    Returns:
        The written paths, the strip `<stem>.png` first.
    """
    from PIL import Image
    out_dir.mkdir(parents=True, exist_ok=True)
    images = [np.repeat(np.repeat(np.asarray(s["image"]), scale, axis=0), scale, axis=1) for s in raw_samples]
    results = dlbatch.apply_dl_model(model, dlbatch.preprocess_dl_samples([{"image": i} for i in images], model))
    pictures = [np.asarray(model.model_type.draw_overlay(i, r, model.hyperparameters), dtype=np.uint8)
                for i, r in zip(images, results)]
    paths = []
    for i, picture in enumerate(pictures):
        paths.append(out_dir / f"{stem}_{i}.png")
        Image.fromarray(picture).save(paths[-1])
    gap = np.full((pictures[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([p for picture in pictures for p in (picture, gap)][:-1], axis=1)
    Image.fromarray(strip).save(out_dir / f"{stem}.png")
    return [out_dir / f"{stem}.png", *paths]


def _describe(lesson: Lesson, measures: dict) -> str:
    names = (lesson.metric, *lesson.extra_metrics)
    return ", ".join(f"{n} {measures[n]:.3f}" for n in names if n in measures)


def quick_requested(flag: bool) -> bool:
    """Whether the short mode is asked for.

    Args:
        flag: the `--quick` option.

    Returns:
        True for the flag or a non-empty DLBATCH_TOUR_QUICK other than "0".

    Examples:
        >>> quick_requested(True)
        True
    """
    return flag or os.environ.get(QUICK_ENV, "0") not in ("", "0")


def run_tour(out_dir: str | Path = "dlbatch_tour", *, quick: bool = False, backend: str = "numpy",
             seed: int = 0, only: tuple[str, ...] = ()) -> dict:
    """Run the tour: every lesson trained, measured and drawn.

    Args:
        out_dir: folder of the overlay PNGs and `summary.json`.
        quick: a handful of steps per lesson (seconds, not minutes): checks that it runs, learns
            little.
        backend: compute backend of every model.
        seed: seed of weights and batch order.
        only: lesson names to run (all when empty).

    Returns:
        `{lesson name: {"measures": {...}, "seconds": s, "steps": n, "overlays": [paths]}}`,
        also written to `out_dir/summary.json`.

    Examples:
        >>> summary = run_tour("tour_out", quick=True)   # doctest: +SKIP
        >>> sorted(summary)                               # doctest: +SKIP
        ['classification', 'detection_rectangle1', 'detection_rectangle2', 'segmentation']
    """
    out = Path(out_dir)
    summary: dict[str, Any] = {}
    chosen = [lesson for lesson in lessons() if not only or lesson.name in only]
    for lesson in chosen:
        steps = 3 if quick else lesson.steps
        start = time.perf_counter()
        print(f"\n{lesson.title}: {steps} steps on the {backend} backend", flush=True)
        model, held_out, measures = train_lesson(lesson, steps=steps, num_train=64 if quick else 1000,
                                                 num_held_out=16 if quick else 100, seed=seed, backend=backend)
        for name, value in lesson.overlay_params.items():
            model.set_param(name, value)
        scale = max(1, OVERLAY_SIDE // model.get_param("image_width"))
        paths = write_overlays(model, held_out[:OVERLAYS_PER_LESSON], out, lesson.name, scale)
        seconds = time.perf_counter() - start
        print(f"  learned on {measures.get('num_samples', len(held_out))} held-out images: "
              f"{_describe(lesson, measures)}  ({seconds:.1f} s)")
        print(f"  overlays: {paths[0]}")
        summary[lesson.name] = {
            "measures": {k: v for k, v in measures.items() if isinstance(v, (int, float))},
            "seconds": round(seconds, 2), "steps": steps, "overlays": [str(p) for p in paths]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> dict:
    """Command-line entry: `python -m dlbatch.tour [--quick] [--out DIR]`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="dlbatch_tour", help="folder of the overlay PNGs (default ./dlbatch_tour)")
    ap.add_argument("--quick", action="store_true", help=f"a few steps per model (also {QUICK_ENV}=1)")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=(), help="lesson names to run")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    summary = run_tour(args.out, quick=quick_requested(args.quick), backend=args.backend, seed=args.seed,
                       only=tuple(args.only))
    print(f"\n{len(summary)} model types in {time.perf_counter() - start:.0f} s; "
          f"open {Path(args.out).resolve()} to see their predictions")
    return summary


if __name__ == "__main__":
    main()

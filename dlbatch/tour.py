"""The first hour in two minutes: train each model type briefly on the bundled synthetic scenes
(`dlbatch.data`) on the numpy backend, print what each learned on held-out images next to what
a guess would score, and write overlay PNGs of real predictions into a folder a newcomer can open.

    python -m dlbatch.tour                 # about 80 s of CPU time; PNGs in ./dlbatch_tour
    python -m dlbatch.tour --quick         # a few steps each: checks that everything runs
    DLBATCH_TOUR_QUICK=1 python -m dlbatch.tour

Each lesson is one `create_dl_model`, a loop of `train_dl_model_batch` over random batches with a
short warm-up and a cosine decay of the learning rate (`learning_rate_at`), `evaluate_dl_model` on
held-out images of the same generator, and `apply_dl_model` + the model type's `draw_overlay` for
the pictures. Images are small (24 to 48 pixels) so that every lesson trains in seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import dlbatch
from dlbatch.data import classification_samples, detection_samples, segmentation_samples
from dlbatch.data.families import BARS, BLOBS
from dlbatch.models.segmentation_metrics import segmentation_measures

QUICK_ENV = "DLBATCH_TOUR_QUICK"
OVERLAYS_PER_LESSON = 4
OVERLAY_SIDE = 160  # overlays are enlarged to about this many pixels
NUM_TRAIN, NUM_HELD_OUT = 1000, 200
QUICK_STEPS, QUICK_NUM_TRAIN, QUICK_NUM_HELD_OUT = 3, 64, 16
MIN_LEARNING_RATE_FRACTION = 0.02  # the cosine decay ends at this fraction of the start value


@dataclass(frozen=True)
class Lesson:
    """One model type to train: how to build it, what data it sees and what to report.

    Attributes:
        name: file stem of the lesson's overlays and its key in the summary.
        title: one line printed before training.
        params: keyword arguments of `dlbatch.create_dl_model` (model type under "type";
            `image_dimensions` is added from `side`).
        side: image width and height in pixels.
        data: `data(n, seed)` returns raw samples of `side` x `side` pixels.
        steps: training steps of the full tour.
        metric: the evaluation measure printed as what the model learned.
        extra_metrics: further measures printed after `metric`.
        overlay_params: parameters set after the evaluation, for the pictures (a detection model
            is measured with a low `min_confidence`, as AP wants, and drawn with a higher one).
    """

    name: str
    title: str
    params: dict[str, Any]
    side: int
    data: Callable[[int, int], list[dict]]
    steps: int
    metric: str
    extra_metrics: tuple[str, ...] = field(default=())
    overlay_params: dict[str, Any] = field(default_factory=dict)


def lessons() -> list[Lesson]:
    """The four lessons of the tour: classification, segmentation, detection (rectangle1) and
    oriented detection (rectangle2), all on the `compact` backbone.

    Sizes, steps and learning rates are tuned so that each lesson clearly learns within seconds
    to half a minute of CPU time; the detection heads use `capacity="low"` (one 32-channel
    layer), which costs a fifth less than "medium" for the same AP on these scenes.

    Returns:
        The lessons in the order the tour runs them.
    """
    angles = [-np.pi / 4, 0.0, np.pi / 4, np.pi / 2]
    detection = dict(type="detection", class_ids=[1], solver_type="adam", weight_prior=1e-5, batch_size=8,
                     capacity="low", anchor_num_subscales=2, min_confidence=0.3)
    return [
        Lesson("classification", "classification: which shape is it? (disc, rectangle or triangle; 24x24)",
               dict(type="classification", class_ids=[0, 1, 2], class_names=list(BLOBS[:3]), batch_size=32,
                    solver_type="adam", learning_rate=3e-3),
               24, lambda n, seed: classification_samples(n, height=24, width=24, seed=seed),
               steps=150, metric="accuracy", extra_metrics=("mean_precision", "mean_recall")),
        Lesson("segmentation", "segmentation: which pixels belong to a disc? (32x32)",
               dict(type="segmentation", class_ids=[0, 1], class_names=["background", "disc"], batch_size=16,
                    solver_type="adam", learning_rate=3e-3, weight_prior=1e-5),
               32, lambda n, seed: segmentation_samples(n, height=32, width=32, class_ids=(1,), seed=seed),
               steps=150, metric="mean_iou", extra_metrics=("pixel_accuracy",)),
        Lesson("detection_rectangle1", "detection: where are the discs? axis-parallel boxes (rectangle1, 48x48)",
               dict(detection, class_names=["disc"], learning_rate=2e-3, anchor_aspect_ratios=[1.0]),
               48, lambda n, seed: detection_samples(n, height=48, width=48, class_ids=(1,), seed=seed),
               steps=200, metric="ap_50", extra_metrics=("mean_ap",), overlay_params={"min_confidence": 0.5}),
        Lesson("detection_rectangle2", "detection: where are the bars, at what angle? oriented boxes "
               "(rectangle2, 48x48)",
               dict(detection, class_names=[BARS[0]], learning_rate=1e-3, instance_type="rectangle2",
                    ignore_direction=True, anchor_angles=angles, anchor_aspect_ratios=[2.5]),
               48, lambda n, seed: detection_samples(n, height=48, width=48, class_ids=(1,), seed=seed,
                                                     instance_type="rectangle2"),
               steps=400, metric="ap_50", extra_metrics=("mean_ap",), overlay_params={"min_confidence": 0.5}),
    ]


def learning_rate_at(step: int, steps: int, start: float) -> float:
    """The learning rate of training step `step` (0-based) of `steps`: a linear warm-up over the
    first steps (up to 10), then a cosine decay from `start` down to 2% of it. Short runs learn
    more with it than with one late drop, because most steps run at a high rate and the last
    ones settle.

    Args:
        step: the step about to run.
        steps: all steps of the run.
        start: the peak learning rate.

    Returns:
        The learning rate for that step.

    Examples:
        >>> [round(learning_rate_at(s, 150, 1.0), 3) for s in (0, 9, 80, 149)]
        [0.1, 1.0, 0.494, 0.02]
    """
    warmup = max(1, min(10, steps // 15))
    if step < warmup:
        return start * (step + 1) / warmup
    done = (step - warmup) / max(1, steps - 1 - warmup)
    return max(start * 0.5 * (1.0 + math.cos(math.pi * done)), start * MIN_LEARNING_RATE_FRACTION)


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
    model = dlbatch.create_dl_model(params.pop("type"), backbone="compact", backend=backend, seed=seed,
                                    image_dimensions=[lesson.side, lesson.side, 3], **params)
    train = dlbatch.preprocess_dl_samples(lesson.data(num_train, seed + 1), model)
    held_out_raw = lesson.data(num_held_out, seed + 2)
    batch = model.get_param("batch_size")
    repeat = len(train) < batch  # a tiny training set (quick checks) fills a batch with repeats
    start = model.get_param("learning_rate")
    rng = np.random.default_rng(seed)
    for step in range(steps):
        model.set_param("learning_rate", learning_rate_at(step, steps, start))
        dlbatch.train_dl_model_batch(model, [train[i] for i in rng.choice(len(train), batch, replace=repeat)])
    measures = dlbatch.evaluate_dl_model(model, dlbatch.preprocess_dl_samples(held_out_raw, model))
    return model, held_out_raw, measures


def guess_score(lesson: Lesson, held_out_raw: list[dict]) -> float:
    """What a model that learned nothing scores on the lesson's measure, from the held-out
    labels: the most frequent class's share (classification), the mean IoU of calling every
    pixel background (segmentation), 0 for a detector that finds nothing (AP).

    Args:
        lesson: the lesson whose `metric` is scored.
        held_out_raw: its held-out samples with their labels.

    Returns:
        The score of that guess, to print next to what the model learned.
    """
    if lesson.metric == "accuracy":
        labels = [int(s["image_label_id"]) for s in held_out_raw]
        return max(labels.count(c) for c in set(labels)) / len(labels)
    if lesson.metric == "mean_iou":
        class_ids = lesson.params["class_ids"]
        confusion = np.zeros((len(class_ids), len(class_ids)), np.int64)
        for s in held_out_raw:   # rows: truth; every pixel predicted as the first class
            truth = np.asarray(s["segmentation_image"]).ravel()
            confusion[:, 0] += [int(np.count_nonzero(truth == c)) for c in class_ids]
        return float(segmentation_measures(confusion, class_ids)["mean_iou"])
    return 0.0


def pictured(held_out_raw: list[dict], k: int = OVERLAYS_PER_LESSON) -> list[dict]:
    """The k held-out samples the pictures show: in order, but those that show something new
    first (a class not yet pictured, a scene with objects), so that four pictures are not four
    empty scenes or four triangles. The measures always use every held-out sample.

    Args:
        held_out_raw: held-out samples with their labels.
        k: how many to picture.

    Returns:
        Up to k samples.

    Examples:
        >>> [s["image_label_id"] for s in pictured([{"image_label_id": c} for c in (2, 2, 0, 1)], 3)]
        [2, 0, 1]
    """
    seen: set[int] = set()
    first, rest = [], []
    for s in held_out_raw:
        if "image_label_id" in s:
            new = int(s["image_label_id"]) not in seen
            seen.add(int(s["image_label_id"]))
        elif "bbox_label_id" in s:
            new = len(s["bbox_label_id"]) > 0
        else:
            new = len(np.unique(np.asarray(s.get("segmentation_image", 0)))) > 1
        (first if new else rest).append(s)
    return (first + rest)[:k]


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
        `{lesson name: {"measures": {...}, "metric": name, "guess": score, "seconds": wall-clock,
        "cpu_seconds": process CPU time, "steps": n, "overlays": [paths]}}`, also written to
        `out_dir/summary.json`.

    Examples:
        >>> summary = run_tour("tour_out", quick=True)   # doctest: +SKIP
        >>> sorted(summary)                               # doctest: +SKIP
        ['classification', 'detection_rectangle1', 'detection_rectangle2', 'segmentation']
    """
    out = Path(out_dir)
    summary: dict[str, Any] = {}
    num_train, num_held_out = (QUICK_NUM_TRAIN, QUICK_NUM_HELD_OUT) if quick else (NUM_TRAIN, NUM_HELD_OUT)
    chosen = [lesson for lesson in lessons() if not only or lesson.name in only]
    for number, lesson in enumerate(chosen, start=1):
        steps = QUICK_STEPS if quick else lesson.steps
        start, cpu_start = time.perf_counter(), time.process_time()
        batch = lesson.params["batch_size"]
        print(f"\n[{number}/{len(chosen)}] {lesson.title}\n  training: {steps} steps of {batch} images "
              f"(from {num_train} synthetic scenes), {backend} backend", flush=True)
        model, held_out, measures = train_lesson(lesson, steps=steps, num_train=num_train,
                                                 num_held_out=num_held_out, seed=seed, backend=backend)
        for name, value in lesson.overlay_params.items():
            model.set_param(name, value)
        scale = max(1, OVERLAY_SIDE // lesson.side)
        paths = write_overlays(model, pictured(held_out), out, lesson.name, scale)
        seconds = time.perf_counter() - start
        guess = guess_score(lesson, held_out)
        print(f"  learned, on {len(held_out)} held-out scenes: {_describe(lesson, measures)}\n"
              f"  (a model that learned nothing: {lesson.metric} {guess:.3f})  {seconds:.1f} s\n"
              f"  pictures: {paths[0]}", flush=True)
        summary[lesson.name] = {
            "measures": {k: v for k, v in measures.items() if isinstance(v, (int, float))},
            "metric": lesson.metric, "guess": round(guess, 4), "seconds": round(seconds, 2),
            "cpu_seconds": round(time.process_time() - cpu_start, 2), "steps": steps,
            "overlays": [str(p) for p in paths]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def print_table(summary: dict) -> None:
    """Print one line per lesson: what it learned against a model that learned nothing."""
    print(f"\n{'model type':<22}{'measure':<10}{'learned':>8}{'guess':>8}{'seconds':>9}")
    for name, entry in summary.items():
        metric = entry["metric"]
        print(f"{name:<22}{metric:<10}{entry['measures'][metric]:>8.3f}{entry['guess']:>8.3f}"
              f"{entry['seconds']:>9.1f}")


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
    quick = quick_requested(args.quick)
    print("The tour: one model of each type trained on synthetic scenes (dlbatch.data), measured on "
          "held-out scenes" + (" (quick mode: a few steps each, too few to learn)" if quick else ""))
    summary = run_tour(args.out, quick=quick, backend=args.backend, seed=args.seed, only=tuple(args.only))
    print_table(summary)
    print(f"\n{len(summary)} model types in {time.perf_counter() - start:.0f} s; open "
          f"{Path(args.out).resolve()} to see their predictions (<model type>.png: four held-out scenes)")
    return summary


if __name__ == "__main__":
    main()

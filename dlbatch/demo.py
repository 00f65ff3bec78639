"""The main job (`make demo`): train the `compact` classifier on scikit-learn's handwritten
digits (1,797 real 8x8 scans shipped inside scikit-learn) on the numpy backend, with a fixed
seed and a held-out split, and print what it learned (about 98.5% after 8 epochs, a few seconds;
more epochs add little). `--backend torch --precision bfloat16`
trains the same network under bfloat16 autocast (float32 master weights)."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import dlbatch


def load_digits_samples():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # the demo needs the dev extra
        raise SystemExit("the demo needs scikit-learn: pip install 'dlbatch[dev]'") from exc
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 grey -> 0..255
    return [{"image": img, "image_label_id": int(t)} for img, t in zip(images, digits.target)]


def split(samples, held_out_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(samples))
    n_test = int(round(len(samples) * held_out_fraction))
    return [samples[i] for i in order[n_test:]], [samples[i] for i in order[:n_test]]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=0.01)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (torch backend)")
    ap.add_argument("--precision", default="float32", choices=("float32", "float64", "bfloat16"),
                    help="bfloat16: forward under autocast, float32 weights (torch backend)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON too")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    raw = load_digits_samples()
    train_raw, test_raw = split(raw, 0.2, args.seed)
    model = dlbatch.create_dl_model(
        "classification", backbone="compact", backend=args.backend, device=args.device,
        precision=args.precision, seed=args.seed, class_ids=list(range(10)), image_dimensions=[8, 8, 1],
        batch_size=args.batch_size, learning_rate=args.learning_rate, momentum=0.9, weight_prior=1e-4,
        solver_type="sgd")
    train = dlbatch.preprocess_dl_samples(train_raw, model)
    test = dlbatch.preprocess_dl_samples(test_raw, model)
    print(f"digits: {len(train)} training and {len(test)} held-out images, 8x8 grey, 10 classes")
    print(f"model: {model}")

    rng = np.random.default_rng(args.seed)
    bs = args.batch_size
    for epoch in range(1, args.epochs + 1):
        if epoch == int(args.epochs * 0.75) + 1:  # a late learning-rate drop, HALCON style
            model.set_param("learning_rate", args.learning_rate / 10)
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order) - bs + 1, bs):
            losses.append(dlbatch.train_dl_model_batch(model, [train[j] for j in order[i:i + bs]])["total_loss"])
        print(f"epoch {epoch:2d}  mean loss {np.mean(losses):.4f}  "
              f"lr {model.get_param('learning_rate'):g}  {time.perf_counter() - start:5.1f}s")

    ev = dlbatch.evaluate_dl_model(model, test)
    elapsed = time.perf_counter() - start
    labels = [s["image_label_id"] for s in test_raw]
    guess = max(labels.count(d) for d in set(labels)) / len(labels)  # always the most frequent digit
    print(f"\nheld-out accuracy: {ev['accuracy'] * 100:.2f}% ({ev['num_samples']} images the model never saw; "
          f"always guessing the most frequent digit scores {guess * 100:.1f}%), total time {elapsed:.1f}s")
    print("confusion matrix (rows: true digit, columns: predicted):")
    for d, row in enumerate(ev["confusion_matrix"]):
        print(f"  {d}: " + " ".join(f"{v:3d}" for v in row))
    sure = dlbatch.apply_dl_model(model, test[:5])
    for s, r in zip(test[:5], sure):
        print(f"  true {s['image_label_id']}  predicted {r['classification_class_ids'][0]} "
              f"({r['classification_confidences'][0] * 100:.1f}%)")
    summary = {"accuracy": ev["accuracy"], "seconds": round(elapsed, 2), "epochs": args.epochs,
               "backend": args.backend, "device": args.device, "precision": args.precision}
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

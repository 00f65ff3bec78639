"""Tiny models of every model type and instance type, valid batches for them, and the checks
every fuzz case shares (model unchanged, no hang), so the fuzz tests stay cheap: 8x8 or 16x16
single-channel compact models whose train step takes a few milliseconds."""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Mapping

import numpy as np
from hypothesis import HealthCheck, settings

import dlbatch

KINDS = ("classification", "segmentation", "rectangle1", "rectangle2")
# CI runs EXAMPLES cases per model type; DLBATCH_FUZZ_EXAMPLES=20000 runs the long campaign
EXAMPLES = int(os.environ.get("DLBATCH_FUZZ_EXAMPLES", "2000"))
PARAM_EXAMPLES = max(1, EXAMPLES // 2)  # parameter cases per model type, on top of the sample cases
CASE_TIMEOUT_S = 20  # a case this slow is a hang (a tiny model's step takes milliseconds)

CLASS_IDS = {"classification": [0, 3, 7], "segmentation": [2, 5, 9], "rectangle1": [1, 4], "rectangle2": [1, 4]}
SIDE = {"classification": 8, "segmentation": 16, "rectangle1": 16, "rectangle2": 16}
BATCH = {"classification": (2, 1), "segmentation": (1, 2), "rectangle1": (2, 1), "rectangle2": (1, 2)}
RECT1_KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
RECT2_KEYS = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")


def fuzz_settings(max_examples: int = EXAMPLES) -> settings:
    """Reproducible in CI (derandomize, no example database); no hypothesis deadline, since a
    loaded CI machine would make it flaky: `case_timeout` catches hangs instead."""
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def label_keys(kind: str) -> tuple[str, ...]:
    if kind == "classification":
        return ("image_label_id",)
    if kind == "segmentation":
        return ("segmentation_image", "weight_image")
    return (*(RECT1_KEYS if kind == "rectangle1" else RECT2_KEYS), "bbox_label_id")


def make_model(kind: str, backend: str = "numpy", precision: str = "float32", **params) -> dlbatch.DLModel:
    """The tiniest model of `kind` (one of KINDS) that trains in a few milliseconds."""
    bs, mult = BATCH[kind]
    side = SIDE[kind]
    args: dict[str, Any] = dict(class_ids=CLASS_IDS[kind], image_dimensions=[side, side, 1], batch_size=bs,
                                batch_size_multiplier=mult, learning_rate=0.001, momentum=0.9, seed=3)
    model_type = "detection" if kind.startswith("rectangle") else kind
    if model_type == "detection":
        args.update(instance_type=kind, capacity="low", min_level=2, max_level=2, anchor_num_subscales=1,
                    anchor_aspect_ratios=[1.0])
        if kind == "rectangle2":
            args.update(anchor_angles=[0.0, np.pi / 4])
    args.update(backbone="compact", backend=backend, precision=precision)
    args.update(params)
    return dlbatch.create_dl_model(model_type, **args)


def kind_of(model) -> str:
    t = model.get_param("type")
    return model.get_param("instance_type") if t == "detection" else t


def valid_boxes(kind: str, h: int, w: int, ids, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n boxes well inside an h x w image, in the sample keys of `kind`."""
    out: dict[str, np.ndarray] = {}
    if kind == "rectangle1":
        r1, c1 = rng.uniform(0, h / 2, n), rng.uniform(0, w / 2, n)
        r2, c2 = r1 + rng.uniform(1.0, h / 2 - 1, n), c1 + rng.uniform(1.0, w / 2 - 1, n)
        out.update(zip(RECT1_KEYS, (r1, c1, r2, c2)))
    else:
        out.update(zip(RECT2_KEYS, (rng.uniform(1, h - 2, n), rng.uniform(1, w - 2, n),
                                    rng.uniform(-np.pi, np.pi, n), rng.uniform(1, h / 4, n),
                                    rng.uniform(1, w / 4, n))))
    out["bbox_label_id"] = rng.choice(np.asarray(ids, dtype=np.int64), n)
    return out


def valid_sample(kind: str, hp: Mapping[str, Any], rng: np.random.Generator) -> dict:
    """One labelled sample the model of `kind` with hyperparameters `hp` accepts."""
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    ids = hp["class_ids"]
    sample: dict[str, Any] = {"image": (rng.standard_normal((h, w, c)) * 40).astype(np.float32)}
    if kind == "classification":
        sample["image_label_id"] = int(rng.choice(ids))
    elif kind == "segmentation":
        sample["segmentation_image"] = rng.choice(np.asarray(ids, dtype=np.int64), (h, w))
        if rng.random() < 0.5:
            sample["weight_image"] = rng.uniform(0, 2, (h, w))
    else:
        sample.update(valid_boxes(kind, h, w, ids, rng, int(rng.integers(0, 4))))
    return sample


def valid_batch(model, seed: int = 0, n: int | None = None) -> list[dict]:
    hp = model.hyperparameters
    rng = np.random.default_rng(seed)
    n = hp["batch_size"] * hp["batch_size_multiplier"] if n is None else n
    return [valid_sample(kind_of(model), hp, rng) for _ in range(n)]


def snapshot(model) -> tuple[dict, dict, dict]:
    """Weights and batch-norm statistics, solver state and hyperparameters, as copies."""
    return model.state_dict(), model.solver_state_dict(), dict(model.hyperparameters)


def assert_unchanged(before, model, what: str) -> None:
    """Bit-identical state_dict() and solver_state_dict() (values and dtypes) and equal
    hyperparameters after a call that was refused."""
    after = snapshot(model)
    for label, a, b in (("state_dict", before[0], after[0]), ("solver state", before[1], after[1])):
        assert a.keys() == b.keys(), f"{what} changed the {label} keys"
        for k in a:
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, f"{what} changed {label}[{k}]"
            assert a[k].tobytes() == b[k].tobytes(), f"{what} changed {label}[{k}]"
    assert before[2].keys() == after[2].keys(), f"{what} changed the hyperparameter names"
    for k in before[2]:
        assert repr(before[2][k]) == repr(after[2][k]), f"{what} changed hyperparameter {k}"


class CaseTimeout(BaseException):
    """A fuzz case ran past CASE_TIMEOUT_S: treated as a hang (BaseException, so no
    `except Exception` in dlbatch swallows it)."""


@contextmanager
def case_timeout(seconds: float = CASE_TIMEOUT_S):
    """Fail a case that runs longer than `seconds` (SIGALRM; a no-op outside the main thread
    or where SIGALRM does not exist)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"a fuzz case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except CaseTimeout as exc:  # outside dlbatch now: an AssertionError hypothesis shrinks and reports
        raise AssertionError(f"hang: {exc}") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

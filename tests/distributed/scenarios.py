"""Training runs that the data-parallel tests run once on 2 ranks (each with its shard) and
once in one process on the whole batch: model, batches, sharding and what is recorded."""
from __future__ import annotations

import numpy as np

import dlbatch
from dlbatch.core.errors import DLBackendError, DLNumericError, DLSampleError
from dlbatch.core.plugins import manager
from dlbatch.data import detection_samples

from . import tiny_net

WORLD = 2  # ranks of the distributed run
STEPS = 3
DET_IDS = [4, 7]


def register_test_model() -> None:
    if tiny_net.NAME not in manager.registry.model_types:
        manager.register_plugin(tiny_net, name="tiny_dp_test_plugin")


# name -> network, backend, per-rank batch_size, batch_size_multiplier, solver, batchnorm_sync
SCENARIOS = {
    "torch_plain": dict(net="plain", backend="torch", bs=3, mult=2, solver="sgd"),
    "numpy_plain": dict(net="plain", backend="numpy", bs=3, mult=2, solver="adam"),
    "torch_bn_sync": dict(net="bn", backend="torch", bs=2, mult=2, solver="sgd", sync=True),
    "numpy_bn_sync": dict(net="bn", backend="numpy", bs=2, mult=2, solver="adam", sync=True),
    "torch_bn_per_rank": dict(net="bn", backend="torch", bs=2, mult=1, solver="sgd", sync=False),
    "numpy_bn_per_rank": dict(net="bn", backend="numpy", bs=2, mult=1, solver="sgd", sync=False),
    "torch_detection": dict(net="detection", backend="torch", bs=1, mult=2, solver="sgd", sync=True),
    "numpy_detection": dict(net="detection", backend="numpy", bs=1, mult=2, solver="sgd", sync=True),
    # normaliser max(1, images of class 0); rank 1's shard has none of them in step 0
    "numpy_floor_empty_shard": dict(net="plain_floor", backend="numpy", bs=2, mult=1, solver="sgd", no_class0=1),
    # step 1: a sample of rank 1's shard has an unknown label (refused before any computation)
    "numpy_bad_sample_on_one_rank": dict(net="plain", backend="numpy", bs=2, mult=1, solver="sgd", bad_label_step=1),
    # step 1: an image of rank 1's shard overflows float32 (non-finite loss on that rank only)
    "numpy_overflow_on_one_rank": dict(net="plain", backend="numpy", bs=2, mult=1, solver="sgd", huge_step=1,
                                       precision="float32"),
    # a shard without any box: its max(1, positives) normaliser needs the floor after the sum
    "torch_detection_empty_shard": dict(net="detection", backend="torch", bs=1, mult=2, solver="sgd", sync=True,
                                        min_objects=0),
}


def make_model(name: str, batch_size: int):
    sc = SCENARIOS[name]
    common = dict(batch_size=batch_size, batch_size_multiplier=sc["mult"], learning_rate=0.02, momentum=0.9,
                  weight_prior=1e-3, solver_type=sc["solver"], seed=3, backend=sc["backend"], precision=sc.get("precision", "float64"))
    if sc.get("sync"):
        common["batchnorm_sync"] = True
    if sc["net"] == "detection":
        return dlbatch.create_dl_model("detection", backbone="compact", class_ids=DET_IDS,
                                       image_dimensions=[32, 32, 3], capacity="low", min_level=2, max_level=3,
                                       anchor_num_subscales=2, anchor_aspect_ratios=[1.0, 0.5], **common)
    register_test_model()
    return dlbatch.create_dl_model(tiny_net.NAME, backbone=sc["net"], image_dimensions=[6, 6, 2],
                                   class_ids=[0, 1, 2], **common)


def global_batch(name: str, model, step: int) -> list[dict]:
    """The whole batch of one step: WORLD * batch_size * multiplier samples."""
    sc = SCENARIOS[name]
    n = WORLD * sc["bs"] * sc["mult"]
    rng = np.random.default_rng(100 + step)
    if sc["net"] == "detection":
        raw = detection_samples(n, height=32, width=32, class_ids=tuple(DET_IDS), seed=10 + step,
                                min_objects=sc.get("min_objects", 1), max_objects=4)
        return dlbatch.preprocess_dl_samples(raw, model)
    samples = [{"image": (rng.standard_normal((6, 6, 2)) * 40).astype(np.float32),
                "image_label_id": int(rng.integers(0, 3))} for _ in range(n)]
    if sc.get("no_class0") is not None and step == 0:  # that rank's shard of micro-batch 0 has no class 0
        for i in range(sc["no_class0"] * sc["bs"], (sc["no_class0"] + 1) * sc["bs"]):
            samples[i]["image_label_id"] = 1 + i % 2
        samples[0]["image_label_id"] = 0
    if sc.get("no_class0") is not None and step == 1:  # no class 0 anywhere: the floor 1 divides
        for i, s in enumerate(samples):
            s["image_label_id"] = 1 + i % 2
    # sample bs is the first of rank 1's shard (micro-batch 0)
    if sc.get("bad_label_step") == step:
        samples[sc["bs"]]["image_label_id"] = 99
    if sc.get("huge_step") == step:
        samples[sc["bs"]]["image"] = np.full((6, 6, 2), 3e38, dtype=np.float32)
    return samples


def shard(samples: list, rank: int, world: int, bs: int, mult: int) -> list:
    """Rank `rank`'s samples: its slice of every micro-batch, so that micro-batch k of the
    whole batch is the union of the ranks' micro-batches k."""
    per = len(samples) // mult
    out = []
    for k in range(mult):
        micro = samples[k * per:(k + 1) * per]
        out += micro[rank * bs:(rank + 1) * bs]
    return out


def run(name: str, rank: int, world: int, steps: int = STEPS, after_step=None) -> dict:
    """Train `steps` steps as rank `rank` of `world` (world 1: the whole batch) and return the
    loss values of every step, the final weights and statistics, and the solver state."""
    sc = SCENARIOS[name]
    bs = sc["bs"] * WORLD // world
    model = make_model(name, bs)
    record: dict[str, np.ndarray] = {}
    losses, refused, keys = [], [], []
    for step in range(steps):
        samples = shard(global_batch(name, model, step), rank, world, bs, sc["mult"])
        before = model.state_dict(), model.solver_state_dict()
        try:
            out = dlbatch.train_dl_model_batch(model, samples)
        except (DLSampleError, DLNumericError, DLBackendError) as exc:  # not a failed collective (DLError)
            refused.append(f"{step}:{type(exc).__name__}:{exc}")
            after = model.state_dict(), model.solver_state_dict()
            assert all(np.array_equal(a[n], b[n]) for a, b in zip(before, after) for n in a), "model changed"
        else:
            keys = sorted(out)
            losses.append([out[k] for k in keys])
        if after_step is not None:
            after_step(step)
    record["losses"] = np.array(losses)
    record["refused"] = np.array(refused, dtype=str)
    record["loss_keys"] = np.array(keys)
    for n, v in model.state_dict().items():
        record[f"w/{n}"] = np.asarray(v)
    for n, v in model.solver_state_dict().items():
        record[f"s/{n}"] = np.asarray(v)
    return record


def box_counts(name: str, step: int) -> list[int]:
    """Boxes per rank in one step of a detection scenario (the shards must differ)."""
    sc = SCENARIOS[name]
    model = make_model(name, sc["bs"])
    samples = global_batch(name, model, step)
    return [sum(len(s["bbox_label_id"]) for s in shard(samples, r, WORLD, sc["bs"], sc["mult"]))
            for r in range(WORLD)]

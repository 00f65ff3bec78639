"""Training batches: a fresh permutation of the training set per epoch, samples fetched from
any Sequence of sample dicts only when their batch runs, prepared for the model, augmented.

Every random stream is derived from (seed, purpose, epoch[, iteration]) by numpy's
SeedSequence, never carried from one epoch to the next, so a run resumed at an epoch boundary
draws exactly the numbers an uninterrupted run draws, with no generator state to save.

The last incomplete batch of an epoch is dropped (as HALCON's train_dl_model does): a weight
update needs exactly batch_size * batch_size_multiplier samples, and the dropped samples are
in other batches in the next epochs, whose order differs.

Distributed (W ranks): one weight update consumes the global batch of W * batch_size *
batch_size_multiplier consecutive samples of the epoch's order, rank r taking the r-th
contiguous slice (rank_slice). Each sample is augmented with its own stream, keyed by its
position in the global batch, so W ranks with batch_size B see exactly the samples, in the
same order and augmented the same way, as one process with batch_size W * B.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Mapping

import numpy as np

from ..core.errors import DLParamError, DLSampleError
from ..core.samples import require_key
from .augment import AugmentParams, augment_dl_samples

SHUFFLE, AUGMENT = 1, 2  # purposes, part of each stream's key


def random_stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A generator that depends on (seed, purpose, keys) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(purpose, *keys))))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training samples in `epoch` (counted from 1): a permutation of 0..n-1."""
    return random_stream(seed, SHUFFLE, epoch).permutation(n)


def batch_samples(model) -> int:
    hp = model.hyperparameters
    return int(hp["batch_size"]) * int(hp["batch_size_multiplier"])


def iterations_per_epoch(n: int, batch: int, world: int = 1) -> int:
    """Complete global batches (batch samples on each of `world` ranks) in an epoch of n."""
    if n < batch * world:
        ranks = f" on each of {world} ranks ({batch * world} in all)" if world > 1 else ""
        raise DLParamError(f"the training set has {n} samples, but one weight update needs batch_size * "
                           f"batch_size_multiplier = {batch}{ranks}; add samples or lower batch_size")
    return n // (batch * world)


def rank_slice(iteration: int, batch: int, rank: int = 0, world: int = 1) -> tuple[int, int]:
    """[start, stop) in the epoch's order of the samples `rank` trains on in `iteration`
    (counted from 1): its contiguous part of that iteration's global batch."""
    start = ((iteration - 1) * world + rank) * batch
    return start, start + batch


def check_sequence(samples, what: str) -> None:
    if not isinstance(samples, Sequence) or isinstance(samples, (str, bytes, Mapping)):
        raise DLParamError(f"{what} must be a sequence of sample dicts (a list, or a dataset from "
                           f"dlbatch.datasets.read_dl_dataset), got {type(samples).__name__}")


def is_prepared(sample: Mapping[str, Any], hp: Mapping[str, Any]) -> bool:
    """A floating-point image already in the model's size needs no preprocessing."""
    image = sample.get("image")
    if not isinstance(image, np.ndarray) or image.dtype.kind != "f":
        return False
    h, w, c = hp["image_height"], hp["image_width"], hp["image_num_channels"]
    return image.shape == (h, w, c) or (c == 1 and image.shape == (h, w))


def fetch(samples, indices, what: str) -> list[Mapping]:
    out = []
    for i in indices:
        s = samples[int(i)]
        if not isinstance(s, Mapping):
            raise DLSampleError(f"{what} sample {int(i)} is a {type(s).__name__}, expected a dict with "
                                "an 'image' key and label keys")
        out.append(s)
    return out


def prepare(samples: list[Mapping], model, indices, what: str) -> list[dict]:
    """The samples in the model's input format (preprocess_dl_samples per sample, skipped for
    prepared ones); errors name the sample's index in the whole set."""
    hp = model.hyperparameters
    out = []
    for s, i in zip(samples, indices):
        if is_prepared(s, hp):
            out.append(s)
            continue
        require_key(s, int(i), "image", "training and evaluation need")
        try:
            out.append(model.model_type.preprocess_sample(s, hp, int(i)))
        except DLSampleError as e:
            raise DLSampleError(f"{what} set: {e}{_file_note(s)}") from None
    return out


def _file_note(sample: Mapping) -> str:
    name = sample.get("image_file_name")
    return f" (image file {name})" if name else ""


ORIENTATION_PARAMS = ("ignore_direction", "class_ids_no_orientation")


def augmentation(augment, model) -> AugmentParams | None:
    """None, or AugmentParams from a dict of HALCON's names (or AugmentParams itself). A dict
    that does not name ignore_direction / class_ids_no_orientation takes them from a model that
    has them (rectangle2 detection), so augmented orientations follow the model's convention."""
    if augment is None or isinstance(augment, AugmentParams):
        return augment
    if isinstance(augment, Mapping):
        hp = model.hyperparameters
        augment = {**{k: hp[k] for k in ORIENTATION_PARAMS if hp.get(k) is not None}, **augment}
    return AugmentParams.from_dict(augment)


def training_batch(train, indices, model, params, seed: int, epoch: int, iteration: int,
                   first_position: int = 0) -> list[dict]:
    """The samples of one weight update (on this rank): fetched, prepared, then each augmented
    with the stream of (seed, epoch, iteration, its position in the global batch);
    first_position is the position of indices[0] (rank * its batch when distributed)."""
    batch = prepare(fetch(train, indices, "training"), model, indices, "training")
    if params is None:
        return batch
    hp = model.hyperparameters
    image_range = (hp["image_range_min"], hp["image_range_max"])
    out = []
    for position, (sample, index) in enumerate(zip(batch, indices), start=first_position):
        rng = random_stream(seed, AUGMENT, epoch, iteration, position)
        try:
            out.extend(augment_dl_samples([sample], params, rng, image_range=image_range))
        except DLSampleError as e:
            raise DLSampleError(f"augmenting training sample {int(index)}: {e}") from None
    return out


def validation_chunks(validation, model):
    """The validation set in chunks of batch_size, each fetched and prepared when it is needed."""
    bs = max(1, int(model.hyperparameters["batch_size"]))
    for start in range(0, len(validation), bs):
        indices = range(start, min(start + bs, len(validation)))
        yield prepare(fetch(validation, indices, "validation"), model, indices, "validation")

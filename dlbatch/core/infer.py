"""apply_dl_model and evaluate_dl_model: inference with running batch-norm statistics."""
from __future__ import annotations

import numpy as np

from .preprocess import SampleContext
from .samples import as_sample_list


def raw_outputs(model, samples, names=None) -> dict:
    """Network outputs as numpy arrays for already validated samples (inference mode)."""
    hp = model.hyperparameters
    enc = model.model_type.encode(samples, hp, model.meta, labels=False, dtype=model.precision)
    inputs = {n: model.asarray(a) for n, a in enc.inputs.items()}
    wanted = tuple(names) if names else model.model_type.inference_outputs(model.meta)
    result = model.program().forward(model.values, inputs, training=False,
                                     bn_momentum=hp["batchnorm_momentum"], wanted=wanted)
    return {n: model.backend.to_numpy(v) for n, v in result.outputs.items()}


def apply_model(model, samples) -> list[dict]:
    """apply_dl_model: check the samples (no labels needed), run them in chunks of
    batch_size, decode the results into the raw images' pixels."""
    samples = as_sample_list(samples)
    model.model_type.check_samples(samples, model.hyperparameters, labels=False)
    return _apply_checked(model, samples)


def _apply_checked(model, samples, *, original_pixels: bool = True) -> list[dict]:
    """Inference on checked samples; original_pixels=False keeps results in the network's
    input pixels, where evaluation compares them with preprocessed labels."""
    hp = model.hyperparameters
    contexts = [SampleContext.of(s if original_pixels else {}, hp, i) for i, s in enumerate(samples)]
    bs = max(1, hp["batch_size"])
    chunks = [raw_outputs(model, samples[i:i + bs]) for i in range(0, len(samples), bs)]
    if not chunks:
        return []
    outputs = {name: np.concatenate([c[name] for c in chunks], axis=0) for name in chunks[0]}
    return model.model_type.decode(outputs, hp, model.meta, contexts)


def evaluate_model(model, samples) -> dict:
    """Apply the model batch by batch and let the model type accumulate its measures."""
    samples = as_sample_list(samples)
    bs = max(1, model.hyperparameters["batch_size"])
    return evaluate_batches(model, (samples[i:i + bs] for i in range(0, len(samples), bs)))


def evaluate_batches(model, batches) -> dict:
    """evaluate_dl_model over an iterable of sample lists in the model's input format, so a
    dataset on disk is measured without holding it in memory. Results are compared with the
    labels in the network's input pixels, where the samples' labels are (a preprocessed
    sample's boxes and label image were transformed with its image)."""
    hp = model.hyperparameters
    evaluation = model.model_type.evaluation(hp)
    for chunk in batches:
        chunk = as_sample_list(chunk)
        model.model_type.check_samples(chunk, hp, labels=True)
        evaluation.add(_apply_checked(model, chunk, original_pixels=False), chunk)
    return evaluation.summary()

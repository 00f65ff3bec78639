"""apply_dl_model and evaluate_dl_model: inference with running batch-norm statistics."""
from __future__ import annotations

import numpy as np

from .samples import as_sample_list


def raw_outputs(model, samples, names=None) -> dict:
    """Network outputs as numpy arrays for already validated samples (inference mode)."""
    hp = model._hp
    enc = model.model_type.encode(samples, hp, model.meta, labels=False, dtype=model._precision)
    backend = model.backend
    inputs = {n: backend.asarray(a, device=model._device, dtype=model._precision) for n, a in enc.inputs.items()}
    wanted = tuple(names) if names else model.model_type.inference_outputs(model.meta)
    result = model.program().forward(model._values, inputs, training=False,
                                     bn_momentum=hp["batchnorm_momentum"], wanted=wanted)
    return {n: backend.to_numpy(v) for n, v in result.outputs.items()}


def apply_model(model, samples) -> list[dict]:
    samples = as_sample_list(samples)
    model.model_type.check_samples(samples, model._hp, labels=False)
    outputs = {}
    bs = max(1, model._hp["batch_size"])
    chunks = [raw_outputs(model, samples[i:i + bs]) for i in range(0, len(samples), bs)]
    for name in chunks[0] if chunks else ():
        outputs[name] = np.concatenate([c[name] for c in chunks], axis=0)
    return model.model_type.decode(outputs, model._hp, model.meta) if chunks else []


def evaluate_model(model, samples) -> dict:
    samples = as_sample_list(samples)
    model.model_type.check_samples(samples, model._hp, labels=True)
    results = apply_model(model, samples)
    return model.model_type.evaluate(results, samples, model._hp)

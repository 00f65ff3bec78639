"""What a run records about its arguments, and the rules for resuming it.

A run can resume only with what decides its weights unchanged: the seed, the change strategies,
the augmentation, the evaluation interval, the sizes of the training and validation sets and
the model's hyperparameters as passed in (those a change strategy sets are left out, as the
strategy sets them again at each epoch start) and the number of ranks (batch_size is per rank). `epochs` may differ: a longer run continues
with more epochs (its weights equal those of an uninterrupted run of the new length, though
the old run's evaluation after its last epoch stays in the history), a shorter one must still
reach the epoch of the state. The state cannot see whether the samples' content changed.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import DLParamError
from .log import json_safe


def augment_record(params) -> dict | None:
    return None if params is None else json_safe(params.to_dict())


def hyperparameters_record(model, changed: set[str]) -> dict:
    hp = {k: v for k, v in model.hyperparameters.items() if k not in changed}
    return json.loads(json.dumps(json_safe(hp)))  # as it reads back from state.json


#: what a state written before an argument was recorded implies for it
RECORDED_LATER = {"world_size": 1}


def run_arguments(model, *, seed, evaluation_interval_epochs, strategies, params, train, validation,
                  world_size: int = 1) -> dict:
    changed = {s.model_param for s in strategies}
    return {
        "seed": seed,
        "evaluation_interval_epochs": evaluation_interval_epochs,
        "change": [s.as_dict() for s in strategies],
        "augment": augment_record(params),
        "train_samples": len(train),
        "validation_samples": None if validation is None else len(validation),
        "model_type": model.model_type.name,
        "hyperparameters": hyperparameters_record(model, changed),
        "world_size": world_size,
    }


def check_resume(saved: dict, arguments: dict, epochs: int, state_json: Path) -> None:
    """DLParamError listing every difference that would make the resumed run another run."""
    old = saved.get("arguments", {})
    new = json.loads(json.dumps(json_safe(arguments)))
    problems = []
    for key in new:
        if key == "hyperparameters":
            continue
        if old.get(key, RECORDED_LATER.get(key)) != new[key]:
            problems.append(f"{key} was {old.get(key)!r}, now {new[key]!r}")
    old_hp, new_hp = old.get("hyperparameters", {}), new["hyperparameters"]
    for key in sorted(set(old_hp) | set(new_hp)):
        if old_hp.get(key) != new_hp.get(key):
            problems.append(f"model parameter {key} was {old_hp.get(key)!r}, now {new_hp.get(key)!r}")
    if problems:
        ranks = " and number of processes (--nproc x --nnodes)" if any("world_size" in p for p in problems) else ""
        raise DLParamError(f"cannot resume the run of {state_json}: {'; '.join(problems)}. Resume with the "
                           f"arguments{ranks} and model of the interrupted run, or start a new run in another "
                           "out_dir")
    if epochs < saved["epoch"]:
        raise DLParamError(f"cannot resume the run of {state_json} with epochs={epochs}: it has already "
                           f"trained {saved['epoch']} epochs; pass epochs >= {saved['epoch']}")

"""The train-step orchestrator (SPEC section 1): exactly one weight update per call.

validate -> micro-batches (forward, loss terms, backward, accumulate) -> weight prior ->
finiteness check -> solver -> commit. Nothing is written to the model before the commit, so
any error leaves weights, batch-norm statistics and solver state exactly as they were.

Each loss term's value is its loss's unnormalised sum divided by the normaliser the model type
encoded for the micro-batch (SPEC section 4); values and gradients are then averaged over the
micro-batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import solvers
from .backend import training_backend_names
from .errors import DLBackendError, DLNumericError, DLSampleError
from .loss import Loss
from .model_type import LossTerm
from .plugins import manager
from .regularization import add_weight_prior, regularized_names
from .samples import as_sample_list
from .system import get_system


@dataclass(frozen=True)
class BoundTerm:
    """A loss term with its registered loss, options, weight and result key, for one step."""

    term: LossTerm
    loss: Loss
    options: dict
    weight: float
    result_key: str


def result_keys(pairs: list[tuple[LossTerm, str]]) -> dict[str, str]:
    """Term name -> result key: `loss_<loss name>` (SPEC section 1) when one term uses that
    loss, `loss_<loss name>_<term name>` for each term when several share it, so that every
    term reports its own value."""
    uses: dict[str, int] = {}
    for _, loss_name in pairs:
        uses[loss_name] = uses.get(loss_name, 0) + 1
    return {t.name: f"loss_{n}" if uses[n] == 1 else f"loss_{n}_{t.name}" for t, n in pairs}


def bound_terms(model) -> list[BoundTerm]:
    hp = model.hyperparameters
    pairs = list(zip(model.loss_terms(), model.loss_names().values()))
    keys = result_keys(pairs)
    return [BoundTerm(t, manager.loss(name), model.model_type.loss_options(t, hp),
                      1.0 if t.weight_param is None else float(hp[t.weight_param]), keys[t.name])
            for t, name in pairs]


def refuse_inference_only(model) -> None:
    """An inference-only backend (Backend.trains False) cannot run the step: say so before
    anything is read or written, with the backends that train and how to switch."""
    if getattr(model.backend, "trains", True):
        return
    trainers = training_backend_names(manager.registry.backends)
    names = ", ".join(trainers) or "(none registered)"
    first = trainers[0] if trainers else "numpy"
    raise DLBackendError(f"the {model.backend_name} backend runs inference only (apply_dl_model, "
                         f"evaluate_dl_model); train_dl_model_batch needs a backend that trains: {names}. "
                         f"Switch with set_dl_model_param(model, 'backend', {first!r}), train, then switch "
                         f"back; weights and solver state move with the model. Nothing was changed")


def train_step(model, samples) -> dict[str, float]:
    refuse_inference_only(model)
    samples = as_sample_list(samples)
    hp = model.hyperparameters
    bs, mult = hp["batch_size"], hp["batch_size_multiplier"]
    if len(samples) != bs * mult:
        raise DLSampleError(f"got {len(samples)} samples, but batch_size * batch_size_multiplier = "
                            f"{bs} * {mult} = {bs * mult}; pass exactly that many, or change batch_size "
                            "or batch_size_multiplier")
    model.model_type.check_samples(samples, hp, labels=True)
    backend = model.backend
    xp = backend.xp
    program = model.program()
    solver_state = model.solver_state
    backend.set_deterministic(bool(get_system("cudnn_deterministic")))
    backend.seed(int(hp["seed"]) * 1_000_003 + int(solver_state["step"]))

    terms = bound_terms(model)
    wanted = tuple(dict.fromkeys(bt.term.output for bt in terms))
    values = model.values
    stats: dict[str, Any] = {}
    grads: dict[str, Any] = {}
    term_values: dict[str, Any] = {bt.result_key: 0.0 for bt in terms}
    for k in range(mult):
        micro = samples[k * bs:(k + 1) * bs]
        enc = model.model_type.encode(micro, hp, model.meta, labels=True, dtype=model.precision)
        inputs = {n: model.asarray(a) for n, a in enc.inputs.items()}
        current = {**values, **stats} if stats else values
        result = program.forward(current, inputs, training=True,
                                 bn_momentum=hp["batchnorm_momentum"], wanted=wanted)
        stats.update(result.statistics)
        output_grads: dict[str, Any] = {}
        for bt in terms:
            target = enc.targets[bt.term.name]
            # the place where data-parallel training will sum the normaliser over every rank
            normalizer = float(target.normalizer)
            if normalizer <= 0:  # nothing in this micro-batch counts for the term
                continue
            total, g = bt.loss.value_and_grad(xp, result.outputs[bt.term.output],
                                              model.asarray(target.target, floating=False),
                                              model.asarray(target.weights), bt.options)
            term_values[bt.result_key] = term_values[bt.result_key] + total / (normalizer * mult)
            g = g * (bt.weight / (normalizer * mult))
            out = bt.term.output
            output_grads[out] = g if out not in output_grads else output_grads[out] + g
        if output_grads:
            for name, g in program.backward(result.tape, output_grads).items():
                grads[name] = g if name not in grads else grads[name] + g

    trainable = {n: values[n] for n in model.graph.trainable}
    for n in trainable:  # a parameter the loss does not reach still gets its weight prior
        if n not in grads:
            grads[n] = xp.zeros_like(trainable[n])
    reg_names = regularized_names({n: tuple(v.shape) for n, v in trainable.items()})
    reg = add_weight_prior(xp, trainable, grads, reg_names, hp["weight_prior"])

    result_losses = {k: float(v) for k, v in term_values.items()}
    result_losses["loss_regularization"] = float(reg)
    total = sum(bt.weight * result_losses[bt.result_key] for bt in terms) + result_losses["loss_regularization"]
    bad = [k for k, v in result_losses.items() if v != v or v in (float("inf"), float("-inf"))]
    if bad:
        raise DLNumericError(f"the loss became non-finite ({', '.join(bad)}); the step was not applied. "
                             "Lower learning_rate, check the images for extreme values, or use "
                             "weight_prior / class_weights")
    if not backend.all_finite(grads.values()) or not backend.all_finite(stats.values()):
        raise DLNumericError("a gradient or batch-norm statistic became non-finite; the step was not "
                             "applied. Lower learning_rate or check the input data")

    solver = solvers.solver_for(hp["solver_type"])
    new_params, new_state = backend.solver_step(solver, trainable, grads, solver_state, hp)
    if not backend.all_finite(new_params.values()):
        raise DLNumericError("the weight update produced non-finite weights; the step was not applied. "
                             "Lower learning_rate")
    model.commit({**stats, **new_params}, new_state)
    return {"total_loss": float(total), **result_losses}

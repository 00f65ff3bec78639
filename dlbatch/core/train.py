"""The train-step orchestrator (SPEC section 1): exactly one weight update per call.

validate -> micro-batches (forward, loss terms, backward, accumulate) -> weight prior ->
finiteness check -> solver -> commit. Nothing is written to the model before the commit, so
any error leaves weights, batch-norm statistics and solver state exactly as they were.
"""
from __future__ import annotations

from typing import Any

from . import solvers
from .errors import DLNumericError, DLSampleError
from .plugins import manager
from .regularization import add_weight_prior, regularized_names
from .samples import as_sample_list
from .system import get_system


def train_step(model, samples) -> dict[str, float]:
    samples = as_sample_list(samples)
    hp = model._hp
    bs, mult = hp["batch_size"], hp["batch_size_multiplier"]
    if len(samples) != bs * mult:
        raise DLSampleError(f"got {len(samples)} samples, but batch_size * batch_size_multiplier = "
                            f"{bs} * {mult} = {bs * mult}; pass exactly that many, or change batch_size "
                            "or batch_size_multiplier")
    model.model_type.check_samples(samples, hp, labels=True)
    backend, device, dtype = model.backend, model._device, model._precision
    xp = backend.xp
    program = model.program()
    backend.set_deterministic(bool(get_system("cudnn_deterministic")))
    backend.seed(int(hp["seed"]) * 1_000_003 + int(model._solver_state["step"]))

    terms = [(t, manager.loss(name), model.model_type.loss_options(t, hp))
             for t, name in zip(model.loss_terms(), model.loss_names().values())]
    weights = {t.name: (1.0 if t.weight_param is None else float(hp[t.weight_param])) for t, _, _ in terms}
    wanted = tuple(dict.fromkeys(t.output for t, _, _ in terms))

    values = model._values
    stats: dict[str, Any] = {}
    grads: dict[str, Any] = {}
    loss_sums: dict[str, Any] = {}
    for k in range(mult):
        micro = samples[k * bs:(k + 1) * bs]
        enc = model.model_type.encode(micro, hp, model.meta, labels=True, dtype=dtype)
        inputs = {n: backend.asarray(a, device=device, dtype=dtype) for n, a in enc.inputs.items()}
        current = {**values, **stats} if stats else values
        result = program.forward(current, inputs, training=True,
                                 bn_momentum=hp["batchnorm_momentum"], wanted=wanted)
        stats.update(result.statistics)
        output_grads: dict[str, Any] = {}
        for term, loss, options in terms:
            target, tweights = enc.targets[term.name]
            target = backend.asarray(target, device=device)
            tweights = backend.asarray(tweights, device=device, dtype=dtype)
            value, g = loss.value_and_grad(xp, result.outputs[term.output], target, tweights, options)
            scale = weights[term.name] / mult
            g = g * scale
            output_grads[term.output] = g if term.output not in output_grads else output_grads[term.output] + g
            key = f"loss_{loss.name}"
            loss_sums[key] = value / mult if key not in loss_sums else loss_sums[key] + value / mult
        micro_grads = program.backward(result.tape, output_grads)
        for name, g in micro_grads.items():
            grads[name] = g if name not in grads else grads[name] + g

    trainable = {n: values[n] for n in model.graph.trainable}
    for n in trainable:  # a parameter the loss does not reach still gets its weight prior
        if n not in grads:
            grads[n] = xp.zeros_like(trainable[n])
    reg_names = regularized_names({n: tuple(v.shape) for n, v in trainable.items()})
    reg = add_weight_prior(xp, trainable, grads, reg_names, hp["weight_prior"])

    result_losses = {k: float(v) for k, v in loss_sums.items()}
    result_losses["loss_regularization"] = float(reg)
    total = sum(weights[t.name] * result_losses[f"loss_{loss.name}"] for t, loss, _ in terms)
    total += result_losses["loss_regularization"]
    bad = [k for k, v in result_losses.items() if v != v or v in (float("inf"), float("-inf"))]
    if bad:
        raise DLNumericError(f"the loss became non-finite ({', '.join(bad)}); the step was not applied. "
                             "Lower learning_rate, check the images for extreme values, or use "
                             "weight_prior / class_weights")
    if not backend.all_finite(grads.values()) or not backend.all_finite(stats.values()):
        raise DLNumericError("a gradient or batch-norm statistic became non-finite; the step was not "
                             "applied. Lower learning_rate or check the input data")

    solver = solvers.solver_for(hp["solver_type"])
    new_params, new_state = backend.solver_step(solver, trainable, grads, model._solver_state, hp)
    if not backend.all_finite(new_params.values()):
        raise DLNumericError("the weight update produced non-finite weights; the step was not applied. "
                             "Lower learning_rate")
    # commit
    model._values = {**values, **stats, **new_params}
    model._solver_state = new_state
    return {"total_loss": float(total), **result_losses}

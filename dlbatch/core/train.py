"""The train-step orchestrator (SPEC section 1): exactly one weight update per call.

validate -> micro-batches (forward, loss terms, backward, accumulate) -> weight prior ->
finiteness check -> solver -> commit. Nothing is written to the model before the commit, so
any error leaves weights, batch-norm statistics and solver state exactly as they were.

Each loss term's value is its loss's unnormalised sum divided by the normaliser the model type
encoded for the micro-batch (SPEC section 4); values and gradients are then averaged over the
micro-batches.

Data-parallel (core/collective.py: a torch.distributed group of W >= 2 ranks is initialised),
each rank r passes its own shard of batch_size * batch_size_multiplier samples, and the step
equals one process on the union of the shards, micro-batch k being the union of the ranks'
micro-batches k. With S_kr the unnormalised sum of rank r's shard of micro-batch k and N_kr
its normaliser, one process on the union computes

    value = 1/mult * sum_k (sum_r S_kr) / N_k,    N_k = sum_r N_kr,

so each rank divides its own S_kr by the normaliser summed over the ranks (one all-reduce per
micro-batch; a term is skipped when N_k, not N_kr, is 0: a rank without positive anchors
still adds its negatives to the focal loss; a normaliser with a floor, max(1, positives), is
exact only when the model type gives the raw count and the floor as TermTarget.normalizer_floor,
since sum_r max(1, p_r) != max(1, sum_r p_r) when a shard has no positive), and the per-rank values and gradients of
S_kr / N_k are SUMMED over the ranks. For a term normalised by a per-rank count (classification:
N_kr = batch_size, N_k = W * batch_size) that sum is exactly the mean over the ranks of each
rank's own mean gradient, the usual data-parallel average. The gradients are summed in one
all-reduce in graph order; then the weight prior is added once (every rank holds the same
weights), the reported values are the sums of the ranks' values (the same numbers on every
rank), and every rank runs the identical solver update on identical inputs, so weights and
solver state stay bit-identical. Non-finite values anywhere reach every rank through these
sums, so all ranks refuse the step together. Batch-norm statistics are per rank (their new
running statistics averaged over the ranks so that the ranks stay identical) unless
`batchnorm_sync` is true: then the kernels normalise with the mean and variance of all ranks'
samples (SyncBatchNorm; the matching sums in backward) and every rank computes the same
running statistics. Without a process group (or with one rank) nothing here communicates and
the step is bit-identical to the single-process one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import solvers
from .collective import current_collective, sync_batchnorm
from .errors import DLError, DLNumericError, DLSampleError
from .inference_only import refuse_inference_only
from .loss import Loss
from .model_type import LossTerm
from .plugins import manager
from .regularization import regularized_names
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
    """The model's loss terms bound to their registered losses, options, weights and result
    keys for one step."""
    hp = model.hyperparameters
    pairs = list(zip(model.loss_terms(), model.loss_names().values()))
    keys = result_keys(pairs)
    return [BoundTerm(t, manager.loss(name), model.model_type.loss_options(t, hp),
                      1.0 if t.weight_param is None else float(hp[t.weight_param]), keys[t.name])
            for t, name in pairs]


def _checked_samples(model, samples) -> list:
    samples = as_sample_list(samples)
    hp = model.hyperparameters
    bs, mult = hp["batch_size"], hp["batch_size_multiplier"]
    if len(samples) != bs * mult:
        raise DLSampleError(f"got {len(samples)} samples, but batch_size * batch_size_multiplier = "
                            f"{bs} * {mult} = {bs * mult}; pass exactly that many, or change batch_size "
                            "or batch_size_multiplier")
    model.model_type.check_samples(samples, hp, labels=True)
    return samples


def _agree_on_samples(coll, model, samples) -> list:
    """Check the samples; data-parallel, every rank learns whether any rank refused its shard
    and all refuse together (a rank that went on alone would pair its next step's all-reduces
    with the others' current ones)."""
    try:
        checked, error = _checked_samples(model, samples), None
    except DLError as exc:
        checked, error = None, exc
    if coll is not None:
        refused = int(coll.all_reduce_floats([0.0 if error is None else 1.0])[0])
        if refused and error is None:
            raise DLSampleError(f"{refused} of {coll.world_size} ranks refused their samples (see their "
                                f"errors); this rank ({coll.rank}) refuses too, so that the ranks stay in step. "
                                "The step was not applied on any rank")
    if error is not None:
        raise error
    return checked


def train_step(model, samples) -> dict[str, float]:
    """train_dl_model_batch (see the module docstring): checked samples, micro-batches
    forward and backward, averaged losses and gradients (all-reduced when data-parallel), one
    solver update committed at once; any error leaves the model unchanged."""
    refuse_inference_only(model)
    coll = current_collective()
    samples = _agree_on_samples(coll, model, samples)
    hp = model.hyperparameters
    bs, mult = hp["batch_size"], hp["batch_size_multiplier"]
    backend = model.backend
    xp = backend.xp
    program = model.program()
    solver_state = model.solver_state
    backend.set_deterministic(bool(get_system("cudnn_deterministic")))
    seed = int(hp["seed"]) * 1_000_003 + int(solver_state["step"])
    backend.seed(seed if coll is None else seed + 7_919 * coll.rank)  # dropout differs per rank

    terms = bound_terms(model)
    wanted = tuple(dict.fromkeys(bt.term.output for bt in terms))
    values = model.values
    stats: dict[str, Any] = {}
    grads: dict[str, Any] = {}
    term_values: dict[str, Any] = {bt.result_key: 0.0 for bt in terms}
    bn_sync = coll if coll is not None and hp.get("batchnorm_sync") else None
    for k in range(mult):
        micro = samples[k * bs:(k + 1) * bs]
        enc = model.model_type.encode(micro, hp, model.meta, labels=True, dtype=model.precision)
        inputs = {n: model.asarray(a) for n, a in enc.inputs.items()}
        current = {**values, **stats} if stats else values
        with sync_batchnorm(bn_sync):
            result = program.forward(current, inputs, training=True,
                                     bn_momentum=hp["batchnorm_momentum"], wanted=wanted)
        stats.update(result.statistics)
        normalizers = [float(enc.targets[bt.term.name].normalizer) for bt in terms]
        if coll is not None:  # the union of the ranks' micro-batches k: normalisers add up
            normalizers = coll.all_reduce_floats(normalizers)
        # a model type whose normaliser is max(floor, count) gives the raw count and the floor
        # (TermTarget.normalizer_floor), so that the floor applies after the sum over ranks
        normalizers = [max(float(enc.targets[bt.term.name].normalizer_floor), n)
                       for bt, n in zip(terms, normalizers)]
        output_grads: dict[str, Any] = {}
        for bt, normalizer in zip(terms, normalizers):
            target = enc.targets[bt.term.name]
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
    result_losses = {k: float(v) for k, v in term_values.items()}
    if coll is not None:
        grads = {n: grads[n] for n in trainable}
        grads, stats, result_losses = _reduce_over_ranks(coll, grads, stats, result_losses, bn_sync is None)
    reg_names = regularized_names({n: tuple(v.shape) for n, v in trainable.items()})
    reg = backend.add_weight_prior(trainable, grads, reg_names, hp["weight_prior"])

    result_losses["loss_regularization"] = float(reg)
    total = sum(bt.weight * result_losses[bt.result_key] for bt in terms) + result_losses["loss_regularization"]
    bad = [k for k, v in result_losses.items() if v != v or v in (float("inf"), float("-inf"))]
    if bad:
        raise DLNumericError(f"the loss became non-finite ({', '.join(bad)}); the step was not applied. "
                             "Lower learning_rate, check the images for extreme values, or use "
                             "weight_prior / class_weights")
    # the update is functional (nothing is committed yet), so gradients, statistics, new weights
    # and solver state are checked together: one pass, and on the torch backend one host read,
    # instead of four; a backend that checked its update's blocks in cache leaves only the
    # statistics; only a refused step looks again to say which went wrong
    solver = solvers.solver_for(hp["solver_type"])
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite result is refused below
            new_params, new_state, finite = backend.solver_step_checked(solver, trainable, grads, solver_state, hp)
    except Exception as exc:
        if not backend.all_finite(grads.values()) or not backend.all_finite(stats.values()):
            raise _numeric_fault(backend, grads, stats, {}, []) from exc
        raise
    moments = [a for slot in solvers.SLOTS for a in new_state.get(slot, {}).values()]
    if finite is None:
        finite = backend.all_finite([*grads.values(), *stats.values(), *new_params.values(), *moments])
    elif finite:
        finite = backend.all_finite(stats.values())
    if not finite:
        raise _numeric_fault(backend, grads, stats, new_params, moments)
    model.commit({**stats, **new_params}, new_state)
    return {"total_loss": float(total), **result_losses}


def _numeric_fault(backend, grads: dict, stats: dict, new_params: dict, moments: list) -> DLNumericError:
    """The error of a step whose arrays are not all finite, for the first kind that is not, in
    the order they arise: gradients or batch-norm statistics, new weights, solver state."""
    if not backend.all_finite(grads.values()) or not backend.all_finite(stats.values()):
        return DLNumericError("a gradient or batch-norm statistic became non-finite; the step was not "
                              "applied. Lower learning_rate or check the input data")
    if not backend.all_finite(new_params.values()):
        return DLNumericError("the weight update produced non-finite weights; the step was not applied. "
                              "Lower learning_rate")
    # e.g. Adam's g*g overflowing float32 while the weights stay finite
    return DLNumericError("the solver state (momentum / Adam moments) became non-finite; the step was not "
                          "applied. Lower weight_prior or learning_rate, or check the input data")


def _reduce_over_ranks(coll, grads: dict, stats: dict, losses: dict, average_stats: bool):
    """Sum the ranks' gradients and loss values (see the module docstring); per-rank batch-norm
    running statistics are averaged so that every rank keeps the same ones."""
    names = list(grads)  # graph order (the caller's), the same on every rank
    grads = dict(zip(names, coll.all_reduce_sum([grads[n] for n in names])))
    keys = list(losses)
    losses = dict(zip(keys, coll.all_reduce_floats([losses[k] for k in keys])))
    if average_stats and stats:
        snames = list(stats)
        summed = coll.all_reduce_sum([stats[n] for n in snames])
        stats = {n: s / coll.world_size for n, s in zip(snames, summed)}
    return grads, stats, losses

"""Shuffled epochs: each epoch trains on a permutation of the training set (the incomplete
last batch left out), fetched lazily batch by batch; the order depends on (seed, epoch) only."""
from __future__ import annotations

import numpy as np
import pytest

import dlbatch
from dlbatch import DLParamError
from dlbatch.training import train_dl_model
from dlbatch.training.batches import epoch_order, is_prepared, prepare

from .tiny import CountingSequence, Recorder, classifier, striped_samples


def test_epoch_order_is_a_permutation_stable_per_seed_and_new_per_epoch():
    orders = {(seed, epoch): epoch_order(seed, epoch, 50) for seed in (0, 1) for epoch in (1, 2, 3)}
    for order in orders.values():
        assert sorted(order.tolist()) == list(range(50))
    assert all(np.array_equal(orders[k], epoch_order(*k, 50)) for k in orders)
    distinct = {tuple(o.tolist()) for o in orders.values()}
    assert len(distinct) == len(orders)


def test_each_epoch_fetches_a_permutation_in_complete_batches_only():
    samples = CountingSequence(striped_samples(18))  # batch 4: 4 iterations, 2 samples left out
    model = classifier()
    rec = Recorder()
    train_dl_model(model, samples, epochs=3, seed=5, progress=rec)
    fetched = [samples.fetched[k * 16:(k + 1) * 16] for k in range(3)]
    assert len(samples.fetched) == 3 * 16
    for epoch, indices in enumerate(fetched, start=1):
        assert len(set(indices)) == 16  # no sample twice in an epoch
        np.testing.assert_array_equal(indices, epoch_order(5, epoch, 18)[:16])
    assert [(e, i) for e, i, _, _ in rec.iterations] == [(e, i) for e in (1, 2, 3) for i in (1, 2, 3, 4)]
    assert int(model.solver_state["step"]) == 12


def test_samples_are_fetched_when_their_batch_runs():
    samples = CountingSequence(striped_samples(40))
    seen = []

    class Watch(Recorder):
        def on_iteration(self, epoch, iteration, iterations_per_epoch, losses):
            seen.append(len(samples.fetched))

    train_dl_model(classifier(), samples, epochs=1, progress=Watch())
    assert seen == [4 * k for k in range(1, 11)]


def test_validation_is_fetched_in_chunks_of_batch_size_during_evaluation(monkeypatch):
    from dlbatch.training import evaluation
    validation = CountingSequence(striped_samples(10, seed=3))
    chunks = []
    real = evaluation.evaluate_batches

    def spy(model, batches):
        def watched():
            for chunk in batches:
                chunks.append((len(chunk), len(validation.fetched)))
                yield chunk
        return real(model, watched())

    monkeypatch.setattr(evaluation, "evaluate_batches", spy)
    model = classifier()
    rec = Recorder()
    train_dl_model(model, striped_samples(8), validation, epochs=2, progress=rec)
    assert validation.fetched == list(range(10)) * 2
    assert chunks == [(4, 4), (4, 8), (2, 10), (4, 14), (4, 18), (2, 20)]  # never more than one chunk ahead
    direct = dlbatch.evaluate_dl_model(model, dlbatch.preprocess_dl_samples(striped_samples(10, seed=3), model))
    assert rec.evaluations[-1][1]["top1_error"] == direct["top1_error"]


def test_prepared_samples_pass_through_and_raw_ones_match_preprocess_dl_samples():
    model = classifier()
    raw = striped_samples(3)
    ready = dlbatch.preprocess_dl_samples(raw, model)
    assert not is_prepared(raw[0], model.hyperparameters) and is_prepared(ready[0], model.hyperparameters)
    out = prepare([raw[0], ready[1], raw[2]], model, [0, 1, 2], "training")
    assert out[1] is ready[1]
    for i in (0, 2):
        np.testing.assert_array_equal(out[i]["image"], ready[i]["image"])
        assert out[i]["image"].dtype == ready[i]["image"].dtype


def test_prepared_and_raw_samples_train_to_the_same_weights():
    raw = striped_samples(12)
    a, b = classifier(), classifier()
    train_dl_model(a, raw, epochs=2, progress=False)
    train_dl_model(b, dlbatch.preprocess_dl_samples(raw, b), epochs=2, progress=False)
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name], err_msg=name)


def test_too_few_samples_for_one_batch_is_a_clear_error():
    with pytest.raises(DLParamError, match="3 samples.*batch_size \\* batch_size_multiplier = 4"):
        train_dl_model(classifier(), striped_samples(3), epochs=1, progress=False)


def test_a_bad_sample_names_its_index_in_the_training_set():
    samples = striped_samples(8)
    samples[5] = {"image": samples[5]["image"]}  # no label
    with pytest.raises(dlbatch.DLSampleError, match="training samples \\[.*5"):
        train_dl_model(classifier(), samples, epochs=1, progress=False)
    with pytest.raises(DLParamError, match="sequence of sample dicts"):
        train_dl_model(classifier(), iter(striped_samples(8)), epochs=1, progress=False)

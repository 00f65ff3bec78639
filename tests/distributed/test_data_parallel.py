"""Data-parallel train_dl_model_batch (issue 18): 2 gloo ranks on CPU, each with its shard,
against 1 process on the whole batch (float64, 3 steps), for both backends; weights and
solver state bit-identical on the ranks. The 2-rank run starts once for all scenarios."""
from __future__ import annotations

import numpy as np
import pytest

from . import scenarios
from .launch import log_of, start_ranks

pytest.importorskip("torch")

NAMES = list(scenarios.SCENARIOS)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Records (name -> [rank 0, rank 1]) or DLError texts of the 2-rank run."""
    out = tmp_path_factory.mktemp("dp")
    procs = start_ranks(out, NAMES)
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0, 0], "\n".join(log_of(out, r) for r in range(2))
    found = {}
    for name in NAMES:
        errs = [out / f"{name}.rank{r}.err" for r in range(2)]
        if all(e.exists() for e in errs):
            found[name] = [e.read_text() for e in errs]
        else:
            found[name] = [dict(np.load(out / f"{name}.rank{r}.npz")) for r in range(2)]
    return found


def records(ranks, name):
    got = ranks[name]
    assert all(isinstance(r, dict) for r in got), f"{name} failed on the ranks: {got}"
    return got


def assert_ranks_bit_identical(r0, r1):
    assert sorted(r0) == sorted(r1)
    for key in r0:
        assert np.array_equal(r0[key], r1[key]), f"{key} differs between the ranks"


def assert_equals_one_process(name, rec):
    ref = scenarios.run(name, 0, 1)
    assert list(rec["loss_keys"]) == list(ref["loss_keys"])
    np.testing.assert_allclose(rec["losses"], ref["losses"], rtol=1e-6, atol=1e-9, err_msg="loss values")
    assert sorted(rec) == sorted(ref)
    for key in ref:
        if key.startswith(("w/", "s/")):
            np.testing.assert_allclose(rec[key], ref[key], rtol=1e-6, atol=1e-9, err_msg=key)
    # the run must have moved the weights, or the comparison would prove little
    start = scenarios.make_model(name, scenarios.SCENARIOS[name]["bs"]).state_dict()
    assert any(not np.allclose(start[k[2:]], rec[k]) for k in rec if k.startswith("w/"))


@pytest.mark.parametrize("name", ["torch_plain", "numpy_plain", "torch_bn_sync", "numpy_bn_sync",
                                  "torch_detection", "numpy_floor_empty_shard"])
def test_two_ranks_on_shards_equal_one_process_on_the_whole_batch(ranks, name):
    r0, r1 = records(ranks, name)
    assert_ranks_bit_identical(r0, r1)
    assert_equals_one_process(name, r0)


def test_detection_shards_hold_different_numbers_of_boxes():
    """So that summing the positive-anchor normalisers over the ranks matters."""
    for step in range(scenarios.STEPS):
        counts = scenarios.box_counts("torch_detection", step)
        assert counts[0] != counts[1], (step, counts)


def test_numpy_detection_with_batchnorm_sync(ranks):
    r0, r1 = records(ranks, "numpy_detection")
    assert_equals_one_process("numpy_detection", r0)


def test_detection_shard_without_boxes_equals_one_process(ranks):
    r0, r1 = records(ranks, "torch_detection_empty_shard")
    assert_ranks_bit_identical(r0, r1)
    assert_equals_one_process("torch_detection_empty_shard", r0)


@pytest.mark.parametrize("name, rank1_error", [("numpy_bad_sample_on_one_rank", "DLSampleError"),
                                               ("numpy_overflow_on_one_rank", "DLNumericError")])
def test_a_step_one_rank_refuses_is_refused_by_every_rank(ranks, name, rank1_error):
    """A bad sample or a non-finite loss on rank 1 only: both ranks refuse step 1 with the model
    untouched (checked in scenarios.run), stay in step, and end like one process on the
    whole batch, which refuses step 1 too."""
    r0, r1 = records(ranks, name)
    assert [e.split(":")[:2] for e in r1["refused"]] == [["1", rank1_error]]
    assert [e.split(":")[0] for e in r0["refused"]] == ["1"]
    if rank1_error == "DLSampleError":  # rank 0's own samples were fine: it says why it refuses
        assert "ranks refused their samples" in r0["refused"][0]
    for key in r0:
        if key != "refused":
            assert np.array_equal(r0[key], r1[key]), key
    ref = scenarios.run(name, 0, 1)
    assert [e.split(":")[0] for e in ref["refused"]] == ["1"]
    np.testing.assert_allclose(r0["losses"], ref["losses"], rtol=1e-5)
    for key in ref:
        if key.startswith(("w/", "s/")):
            np.testing.assert_allclose(r0[key], ref[key], rtol=1e-5, atol=1e-7, err_msg=key)


@pytest.mark.parametrize("name", ["torch_bn_per_rank", "numpy_bn_per_rank"])
def test_per_rank_batchnorm_keeps_the_ranks_identical(ranks, name):
    """Without batchnorm_sync each rank normalises with its own batch statistics (so the step
    differs from one process on the whole batch), but the running statistics are averaged
    and the ranks stay bit-identical."""
    r0, r1 = records(ranks, name)
    assert_ranks_bit_identical(r0, r1)
    ref = scenarios.run(name, 0, 1)
    assert not np.allclose(r0["losses"], ref["losses"], rtol=1e-6, atol=1e-9)

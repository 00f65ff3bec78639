"""A rank that dies (killed) or stops answering (hangs) mid-training makes the other rank fail
with a clear DLError instead of waiting forever: a dead peer's closed connections at once, a
silent one within the process group's timeout (dlbatch.distributed.init_process_group)."""
from __future__ import annotations

import time

import pytest

from .launch import log_of, start_ranks

pytest.importorskip("torch")


@pytest.mark.parametrize("peer", ["killed", "hangs"])
def test_a_lost_rank_makes_the_other_exit_with_a_clear_error(tmp_path, peer):
    # rank 1 pauses after step 0 (writes paused.rank1); rank 0 goes on into step 1's all-reduces
    procs = start_ranks(tmp_path, ["torch_plain"], pause_after_step=0, steps=3, timeout_s=5)
    try:
        marker = tmp_path / "paused.rank1"
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert procs[1].poll() is None, log_of(tmp_path, 1)
            assert time.monotonic() < deadline, "rank 1 never reached its pause"
            time.sleep(0.1)
        if peer == "killed":
            procs[1].kill()
            procs[1].wait(timeout=30)
        try:  # a bound, not a timing assertion: without one a regression would hang the suite
            code = procs[0].wait(timeout=90)
        except Exception:
            pytest.fail("rank 0 still waits 90 s after its peer stopped: " + log_of(tmp_path, 0))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    log = log_of(tmp_path, 0)
    assert code == 2, log
    assert "DLError: rank 0 of 2" in log and "across ranks failed" in log and "restart" in log, log
    assert not (tmp_path / "torch_plain.rank0.npz").exists()

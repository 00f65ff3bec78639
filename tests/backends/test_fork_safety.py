"""A process forked after the numpy backend ran threaded regions (multiprocessing's default
start method on Linux, data-loader workers) can train: its helper threads and locks start anew
instead of waiting for threads that do not exist in the child."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

import dlbatch
from dlbatch.backends.numpy_cpu import parallel

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _model_and_samples():
    model = dlbatch.create_dl_model("classification", backbone="compact", class_ids=[0, 1],
                                    image_dimensions=[32, 32, 3], batch_size=4, seed=3)
    rng = np.random.default_rng(0)
    samples = [{"image": rng.uniform(-127, 128, (32, 32, 3)).astype(np.float32), "image_label_id": i % 2}
               for i in range(4)]
    return model, samples


def test_a_forked_child_trains_after_the_parent_ran_threaded_regions():
    before = parallel.num_threads()
    parallel.set_num_threads(2)
    try:
        model, samples = _model_and_samples()
        dlbatch.train_dl_model_batch(model, samples)  # the parent's helper threads now exist
        pid = os.fork()
        if pid == 0:  # child: one step, then leave without running the parent's cleanups
            try:
                dlbatch.train_dl_model_batch(model, samples)
                os._exit(0)
            except BaseException:
                os._exit(3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in its training step")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        parallel.set_num_threads(before)

"""A forked training child's progress told to the parent through a pipe, so that the crash tests
kill runs at moments defined by progress (after an epoch's state was written, at an epoch's last
update) rather than by wall-clock guesses that a machine slowing down turns wrong."""
from __future__ import annotations

import os
import select
import time

from dlbatch.training import TrainingListener


class Reporter(TrainingListener):
    """A training child's progress, sent to the parent: "B<start epoch>" when it starts,
    "I<epoch>,<iteration>,<iterations>" after each update, "V<epoch>" after an evaluation (and
    best.onnx; the epoch's state is written next) and "E<epoch>" once the epoch's resumable
    state is written (on_epoch_end comes after it), so kills can follow progress instead of
    wall-clock guesses that a slowing machine turns wrong."""

    def __init__(self, report):
        self.report = report

    def on_train_begin(self, info):
        self.report(f"B{info['start_epoch']}\n".encode())

    def on_iteration(self, epoch, iteration, iterations_per_epoch, losses):
        self.report(f"I{epoch},{iteration},{iterations_per_epoch}\n".encode())

    def on_evaluation(self, epoch, summary, main_metric, value, is_best):
        self.report(f"V{epoch}\n".encode())

    def on_epoch_end(self, epoch, record):
        self.report(f"E{epoch}\n".encode())


HANG_S = 300.0  # a child silent this long hangs (a whole run takes ~1 s)


class Progress:
    """The parent's side of a Reporter: events (kind, numbers, arrival time), read as they come."""

    def __init__(self, fd: int):
        self.fd, self.rest, self.events, self.ended = fd, b"", [], False

    def read(self, timeout: float) -> bool:
        """Whether more came within `timeout` s."""
        if self.ended or not select.select([self.fd], [], [], timeout)[0]:
            return False
        chunk, now = os.read(self.fd, 65536), time.monotonic()
        self.ended = not chunk
        *lines, self.rest = (self.rest + chunk).split(b"\n")
        self.events += [(line[:1].decode(), tuple(int(x) for x in line[1:].split(b",")), now) for line in lines]
        return not self.ended

    def wait_for(self, match):
        """The first event that match(kind, numbers) accepts, waiting for it; None when the child
        ended without it."""
        i = 0
        while True:
            for event in self.events[i:]:
                if match(*event[:2]):
                    return event
            i = len(self.events)
            if self.ended:
                return None
            assert self.read(HANG_S) or self.ended, f"the training child reported nothing for {HANG_S} s"

    def drain(self) -> None:
        """Everything a dead child reported."""
        while self.read(0):
            pass

"""Crash safety: a process writing a model file, a training checkpoint or the resumable state
is killed with SIGKILL at random moments; every time the file reads back as the complete old or
the complete new model (weights and solver state compared), at most the killed write's
temporary file is left, the next write clears it, and train_dl_model(resume=True) continues a
killed run to the weights of an uninterrupted one. A full disk leaves the old file intact.

The writers are forked children of the test process (no interpreter start per kill), so the
50+ kills take a few seconds. Training children report their progress through a pipe and are
killed at random delays after a reported moment (an epoch's state written, the fork), or while
the state they write after a reported evaluation is half written, so the kills keep landing
where the test means them on a machine of any speed."""
from __future__ import annotations

import errno
import os
import random
import select
import shutil
import signal
import time

import numpy as np
import pytest

import dlbatch
from dlbatch.backends.numpy_cpu import parallel
from dlbatch.core import atomic_file
from dlbatch.core.errors import DLModelFileError
from dlbatch.training import train_dl_model
from dlbatch.training.checkpoints import RunFiles, read_state, write_state
from tests.reliability.training_reports import Progress, Reporter
from tests.training.tiny import classifier, striped_samples

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")

KILLS = 50
TRAINING_KILLS = 5


def _big_model():
    """A classifier whose file is a few MB (1000 classes, Adam moments), so kills land mid-write."""
    model = dlbatch.create_dl_model("classification", backbone="compact", class_ids=list(range(1000)),
                                    image_dimensions=[16, 16, 1], backend="numpy", solver_type="adam",
                                    batch_size=2, seed=0)
    return model


def _step(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dlbatch.train_dl_model_batch(model, [{"image": rng.random((16, 16, 1)).astype(np.float32),
                                          "image_label_id": int(rng.integers(1000))} for _ in range(2)])


def _everything(model) -> dict:
    return {**{f"w/{k}": v for k, v in model.state_dict().items()},
            **{f"s/{k}": v for k, v in model.solver_state_dict().items()}}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _temps(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if atomic_file.temp_target(n) is not None)


def _fork(work) -> tuple[int, int]:
    """A child running work(report) where report() tells the parent one more write is done (or
    report(message) sends a message); the child's pid and the read end of that pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(read_fd)
            parallel.set_num_threads(1)  # the parent's kernel helper threads do not exist here
            work(lambda message=b".": os.write(write_fd, message))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _kill(pid: int, read_fd: int, delay: float) -> tuple[bool, int]:
    """SIGKILL the child after `delay` s: (whether it was killed rather than finished, the
    writes it completed)."""
    time.sleep(delay)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    done = 0
    while select.select([read_fd], [], [], 0)[0]:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        done += len(chunk)
    os.close(read_fd)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, done


def test_sigkill_during_write_dl_model_leaves_old_or_new_model_and_no_pile_of_temps(tmp_path):
    old, new = _big_model(), _big_model()
    _step(old, 1)
    _step(new, 1)
    _step(new, 2)
    versions = [_everything(old), _everything(new)]
    assert not _equal(*versions)
    path = tmp_path / "model.onnx"
    dlbatch.write_dl_model(old, path)
    assert os.path.getsize(path) > 2_000_000

    def rewrite(report):
        while True:
            for m in (new, old):
                dlbatch.write_dl_model(m, path)
                report()

    start = time.monotonic()
    for _ in range(3):
        dlbatch.write_dl_model(old, path)
    cycle = (time.monotonic() - start) / 3  # one write, as this machine runs now
    rng = random.Random(1234)
    killed = mid_write = 0
    seen = [0, 0]
    for _ in range(KILLS):
        left_before = set(_temps(tmp_path))
        pid, fd = _fork(rewrite)
        assert select.select([fd], [], [], 60)[0] and os.read(fd, 1) == b".", "the writer never wrote"
        was_killed, writes = _kill(pid, fd, rng.uniform(0.0, 2.0 * cycle))  # somewhere in the next writes
        assert was_killed, "the writer ended by itself"
        killed += 1
        back = _everything(dlbatch.read_dl_model(path))
        match = [i for i, v in enumerate(versions) if _equal(back, v)]
        assert match, "the model file is neither the complete old nor the complete new model"
        seen[match[0]] += 1
        temps = _temps(tmp_path)
        assert len(temps) <= 1, temps  # at most the killed write's own
        assert all(atomic_file.temp_target(t) == "model.onnx" for t in temps)
        assert not left_before & set(temps)  # the child's first write cleared what the last kill left
        mid_write += bool(temps)
    dlbatch.write_dl_model(old, path)  # a later write clears the last killed write's file
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]
    assert _equal(_everything(dlbatch.read_dl_model(path)), versions[0])
    assert killed == KILLS
    assert mid_write > 0, "no kill landed inside a write; the model is too small for this test"
    print(f"\n{killed} kills survived, {mid_write} of them inside a write; the file held the old model "
          f"{seen[0]} times, the new one {seen[1]} times")


def _run(model_factory, out, epochs, train, validation, progress=None):
    return train_dl_model(model_factory(), train, validation, epochs=epochs, seed=5, out_dir=out, resume=True,
                          evaluation_interval_epochs=1, progress=progress)


# where a training kill lands: anywhere in the epoch after the run's first saved one (so every
# run saves progress, however fast the machine is); inside the write of the run's first epoch's
# state (a temporary file seen there); anywhere from the fork through the run's first epoch
PLANS = ("next_epoch", "state_write", "start")


def _temp_appears(progress: Progress, out) -> bool:
    """Watch `out` for a temporary file, from the run's first evaluation on (its epoch's state is
    written next), until one appears (True) or the run reports that epoch ended or ends (False)."""
    while not progress.ended and not any(kind == "E" for kind, _, _ in progress.events):
        if any(folder.exists() and _temps(folder) for folder in (out / "state", out)):
            return True
        progress.read(0.0)
    return False


def _training_kill(rng, plan, out, make, epochs, train, validation, seen) -> dict:
    """Fork a training run into `out` and SIGKILL it at a random moment of `plan`, its delay a
    random share of what this run or earlier ones were seen to take (`seen`, updated)."""
    forked = time.monotonic()
    pid, fd = _fork(lambda report: _run(make, out, epochs, train, validation, Reporter(report)))
    progress = Progress(fd)
    when = None
    if plan == "start" and seen:
        when = forked + rng.uniform(0.0, 1.0) * float(np.median(seen))
    elif plan == "state_write" and progress.wait_for(lambda kind, _: kind == "V") and _temp_appears(progress, out):
        when = time.monotonic()
    else:  # next_epoch, or the state's write was missed: anywhere in the run's next epoch
        begin = progress.wait_for(lambda kind, _: kind == "B")
        end = begin and progress.wait_for(lambda kind, _: kind == "E")
        if end is not None:
            seen.append(end[2] - forked)
            when = end[2] + rng.uniform(0.0, 1.0) * (end[2] - begin[2])
    if when is not None:
        time.sleep(max(0.0, when - time.monotonic()))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    progress.drain()
    os.close(fd)
    begins = [n[0] for kind, n, _ in progress.events if kind == "B"]
    return {"killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
            "start": begins[0] if begins else None,
            "ends": [n[0] for kind, n, _ in progress.events if kind == "E"]}


def test_sigkill_during_training_then_resume_always_works(tmp_path):
    def make():
        return classifier(backend="numpy", solver_type="adam", batch_size=2, class_ids=list(range(200)))
    train, validation = striped_samples(12, seed=1), striped_samples(4, seed=2)
    epochs = 6
    reference = _run(make, tmp_path / "reference", epochs, train, validation)
    ref_model = dlbatch.read_dl_model(tmp_path / "reference" / "final.onnx")

    out = tmp_path / "killed"
    rng = random.Random(99)
    kills = attempts = mid_write = 0
    saved = 0  # the epoch whose state the run in `out` holds
    epochs_done = []
    seen = []  # how long runs took from the fork to their first saved epoch
    while kills < TRAINING_KILLS and attempts < 4 * TRAINING_KILLS:
        attempts += 1
        got = _training_kill(rng, PLANS[kills % len(PLANS)], out, make, epochs, train, validation, seen)
        if got["start"] is not None:
            assert got["start"] == saved, "the run did not resume from the state the last kill left"
        if not got["killed"]:  # the run finished before the kill: start it again
            assert got["ends"][-1:] == [epochs], "the training child failed"
            shutil.rmtree(out)
            saved = 0
            continue
        kills += 1
        mid_write += any(folder.exists() and _temps(folder) for folder in (out, out / "state"))
        state = read_state(RunFiles(out))  # clears the killed writer's temporary files
        before = max(got["ends"], default=saved)
        saved = 0 if state is None else state["epoch"]
        # the state holds every epoch the run reported ended, and at most the one being ended
        assert before <= saved <= before + 1, (got, saved)
        if state is not None:
            dlbatch.read_dl_model(out / "state" / state["model_file"])
            epochs_done.append(saved)
        for name in ("best.onnx", "final.onnx"):
            if (out / name).exists():
                dlbatch.read_dl_model(out / name)
        for folder in (out, out / "state"):
            assert not (folder.exists() and _temps(folder)), _temps(folder)
    assert kills == TRAINING_KILLS and max(epochs_done, default=0) >= 1  # the killed runs made progress
    result = _run(make, out, epochs, train, validation)
    assert _equal(_everything(dlbatch.read_dl_model(out / "final.onnx")), _everything(ref_model))
    assert [r["losses"] for r in result["history"]] == [r["losses"] for r in reference["history"]]
    print(f"\n{kills} training kills survived ({attempts} runs started, {mid_write} kills inside a write); "
          f"epochs saved at each kill: {epochs_done}")


# -- full disk -------------------------------------------------------------------------------
def _disk_full_after(monkeypatch, nbytes: int):
    """os.write fails with ENOSPC once `nbytes` have been written (a partial write first)."""
    real = os.write
    written = [0]

    def write(fd, data):
        if written[0] >= nbytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(memoryview(data)[:max(1, nbytes - written[0])]))
        written[0] += n
        return n
    monkeypatch.setattr(atomic_file.os, "write", write)


def test_full_disk_leaves_the_old_model_and_says_so(tmp_path, monkeypatch):
    model = _big_model()
    path = tmp_path / "m.onnx"
    dlbatch.write_dl_model(model, path)
    before = path.read_bytes()
    _step(model, 3)
    _disk_full_after(monkeypatch, 100_000)
    with pytest.raises(DLModelFileError) as info:
        dlbatch.write_dl_model(model, path)
    monkeypatch.undo()
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message
    assert "left unchanged" in message and "disk is full" in message
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_full_disk_for_a_new_file_leaves_nothing(tmp_path, monkeypatch):
    _disk_full_after(monkeypatch, 10)
    with pytest.raises(DLModelFileError, match="no file was written"):
        dlbatch.write_dl_model(_big_model(), tmp_path / "new.onnx")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_full_disk_during_a_checkpoint_keeps_the_previous_state(tmp_path, monkeypatch):
    files = RunFiles(tmp_path)
    files.make()
    model = classifier(backend="numpy")
    write_state(model, files, 1, {"note": "first"})
    first = _everything(model)
    model.set_param("learning_rate", 0.5)
    _disk_full_after(monkeypatch, 0)
    with pytest.raises(DLModelFileError, match="epoch_0002.onnx.*No space left"):
        write_state(model, files, 2, {"note": "second"})
    monkeypatch.undo()
    state = read_state(files)
    assert state["epoch"] == 1 and state["note"] == "first"
    assert _equal(_everything(dlbatch.read_dl_model(files.state_dir / state["model_file"])), first)
    assert sorted(os.listdir(files.state_dir)) == ["epoch_0001.onnx", "state.json"]


# -- which temporary files a write clears ------------------------------------------------------
def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_live_writers_temporary_file_is_kept_and_a_dead_ones_removed(tmp_path):
    host = atomic_file.temp_name("x").split(".")[2]
    live = tmp_path / f".m.onnx.{host}.{os.getppid()}.aa11.tmp"  # the parent process is alive
    dead = tmp_path / f".m.onnx.{host}.{_dead_pid()}.bb22.tmp"
    other_host = tmp_path / f".m.onnx.{'0' * 8 if host != '0' * 8 else '1' * 8}.{_dead_pid()}.cc33.tmp"
    other_target = tmp_path / f".n.onnx.{host}.{_dead_pid()}.dd44.tmp"
    old_live = tmp_path / f".m.onnx.{host}.{os.getppid()}.ee55.tmp"
    legacy_old, legacy_new = tmp_path / ".m.onnx.k2j_x9ab.tmp", tmp_path / ".m.onnx.q8w7e6r5.tmp"
    for p in (live, dead, other_host, other_target, old_live, legacy_old, legacy_new):
        p.write_bytes(b"partial")
    long_ago = time.time() - atomic_file.STALE_AFTER_S - 60
    for p in (old_live, legacy_old):
        os.utime(p, (long_ago, long_ago))
    dlbatch.write_dl_model(classifier(backend="numpy"), tmp_path / "m.onnx")
    left = set(os.listdir(tmp_path))
    assert left == {"m.onnx", live.name, other_host.name, other_target.name, legacy_new.name}


def test_a_disk_filling_up_during_training_stops_it_with_a_clear_error_and_resume_finishes_it(tmp_path, monkeypatch):
    def make():
        return classifier(backend="numpy", solver_type="adam", batch_size=2)
    train, validation = striped_samples(8, seed=1), striped_samples(4, seed=2)
    reference = _run(make, tmp_path / "reference", 3, train, validation)
    real, calls = atomic_file._write_all, [0]

    def full_after_four_files(fd, data):
        calls[0] += 1
        if calls[0] > 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)
    monkeypatch.setattr(atomic_file, "_write_all", full_after_four_files)
    out = tmp_path / "full"
    with pytest.raises(DLModelFileError, match=r"No space left on device.*disk is full"):
        _run(make, out, 3, train, validation)
    monkeypatch.undo()
    assert not [n for folder in (out, out / "state") for n in _temps(folder)]
    result = _run(make, out, 3, train, validation)  # space is back
    assert [r["losses"] for r in result["history"]] == [r["losses"] for r in reference["history"]]
    assert _equal(_everything(dlbatch.read_dl_model(out / "final.onnx")),
                  _everything(dlbatch.read_dl_model(tmp_path / "reference" / "final.onnx")))

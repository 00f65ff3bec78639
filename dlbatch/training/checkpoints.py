"""The files of a run in out_dir and the resumable state.

    out_dir/best.onnx            the model at the best evaluation so far (validation set given)
    out_dir/final.onnx           the model after the last epoch
    out_dir/log.jsonl            see log.py
    out_dir/curves.png           see curves.py
    out_dir/state/epoch_0003.onnx  the model after epoch 3: weights, batch-norm statistics,
                                   solver state and hyperparameters
    out_dir/state/state.json     which epoch_XXXX.onnx is current, plus epoch, best metric and
                                 epoch, history, the log's size and the run's arguments

Every file is written atomically (core.atomic_file: temporary file, fsync, os.replace, fsync of
the folder). The model file of an epoch is written before state.json names it, and older model
files are removed only after, so a kill at any moment leaves a state.json that names a complete
model file. A killed write leaves a temporary file; the next state write (whose target is
another epoch's file) and a fresh run clear those of dead writers, so none pile up.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic_file import atomic_write, clear_stale_temps
from ..core.errors import DLModelFileError
from .log import json_safe

STATE_FORMAT = "dlbatch-training-state"
STATE_VERSION = 1
_MODEL_NAME = re.compile(r"^epoch_\d+\.onnx$")


@dataclass(frozen=True)
class RunFiles:
    out_dir: Path

    @property
    def best(self) -> Path:
        return self.out_dir / "best.onnx"

    @property
    def final(self) -> Path:
        return self.out_dir / "final.onnx"

    @property
    def log(self) -> Path:
        return self.out_dir / "log.jsonl"

    @property
    def curves(self) -> Path:
        return self.out_dir / "curves.png"

    @property
    def state_dir(self) -> Path:
        return self.out_dir / "state"

    @property
    def state_json(self) -> Path:
        return self.state_dir / "state.json"

    def state_model(self, epoch: int) -> Path:
        return self.state_dir / f"epoch_{epoch:04d}.onnx"

    def clear(self) -> None:
        """A fresh run removes what an earlier, unfinished run in the folder left behind (a
        best.onnx from before its first state, say), so nothing of it mixes with the new run."""
        for path in (self.best, self.final, self.curves):
            path.unlink(missing_ok=True)
        for old in self.state_dir.glob("epoch_*.onnx"):
            old.unlink(missing_ok=True)
        self.clear_temps()

    def clear_temps(self) -> None:
        """Remove the temporary files that killed writers of this run's files left behind."""
        mine = {p.name for p in (self.best, self.final, self.curves)}
        clear_stale_temps(self.out_dir, mine.__contains__)
        clear_stale_temps(self.state_dir, lambda n: bool(_MODEL_NAME.match(n)) or n == self.state_json.name)

    def make(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DLModelFileError(f"cannot create the training folder {self.state_dir}: {e}") from None


def write_model(model, path: Path) -> None:
    from .. import write_dl_model
    write_dl_model(model, path)


def write_state(model, files: RunFiles, epoch: int, state: dict) -> None:
    """Model file first, then state.json naming it, then every other epoch file is removed."""
    model_path = files.state_model(epoch)
    write_model(model, model_path)
    record = {"format": STATE_FORMAT, "version": STATE_VERSION, "epoch": epoch,
              "model_file": model_path.name, **state}
    data = json.dumps(json_safe(record), indent=1, allow_nan=False).encode()
    atomic_write(files.state_json, lambda: data)
    for old in files.state_dir.iterdir():
        if _MODEL_NAME.match(old.name) and old.name != model_path.name:
            old.unlink(missing_ok=True)
    clear_stale_temps(files.state_dir, lambda n: bool(_MODEL_NAME.match(n)))


def read_state(files: RunFiles) -> dict | None:
    """The state of the run in out_dir, or None when it holds none. Temporary files a killed
    run left behind are cleared first."""
    files.clear_temps()
    path = files.state_json
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DLModelFileError(f"{path}: cannot read the training state ({e}); delete {files.state_dir} "
                               "to start the run again") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DLModelFileError(f"{path} is not a dlbatch training state; delete it or choose another out_dir")
    if state.get("version") != STATE_VERSION:
        raise DLModelFileError(f"{path} has state version {state.get('version')!r}, this dlbatch reads "
                               f"version {STATE_VERSION}; finish the run with the dlbatch that started it")
    model_path = files.state_dir / str(state.get("model_file"))
    if not model_path.is_file():
        raise DLModelFileError(f"{path} names {model_path}, which is missing; delete {files.state_dir} "
                               "to start the run again")
    return state


def load_state_model(files: RunFiles, state: dict, model) -> None:
    """Put the weights, batch-norm statistics and solver state of the state's model file into
    `model` (its backend, device and precision stay as they are)."""
    from .. import read_dl_model
    path = files.state_dir / state["model_file"]
    saved = read_dl_model(path, backend=model.backend_name, device=model.device, precision=model.precision)
    model.load_state_dict(saved.state_dict())
    model.load_solver_state_dict(saved.solver_state_dict())

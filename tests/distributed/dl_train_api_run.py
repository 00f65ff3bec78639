"""One rank of a torchrun job for the distributed train_dl_model tests:
`torchrun --standalone --nproc-per-node 2 dl_train_api_run.py OUT`. Every rank starts from
DIFFERENT weights (rank r > 0 adds noise), trains 1 epoch into OUT, then a new model (other
noise again) resumes the run to 2 epochs. Each rank writes OUT/rank<r>.json: the listener calls it saw, the
results (times left out) and a digest of its final weights and solver state."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dlbatch.training import train_dl_model  # noqa: E402
from tests.training.tiny import Recorder, classifier, striped_samples  # noqa: E402

ARGS = dict(seed=5, augment={"augmentation_percentage": 50, "mirror": "c"})


def digest(model) -> str:
    h = hashlib.sha256()
    for name, array in sorted({**model.state_dict(), **{f"s/{k}": v for k, v in
                                                         model.solver_state_dict().items()}}.items()):
        h.update(name.encode() + array.tobytes())
    return h.hexdigest()


def model_of_rank(rank: int, draw: int):
    """The same model on every rank, but with noise added to the weights of rank r > 0."""
    model = classifier(backend="numpy")
    if rank:
        rng = np.random.default_rng((rank, draw))
        model.load_state_dict({k: v + rng.normal(0, 0.1, v.shape).astype(v.dtype) if v.dtype.kind == "f" else v
                               for k, v in model.state_dict().items()})
    return model


def without_times(result: dict) -> dict:
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in result["history"]]
    return {**result, "history": history}


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    train, validation = striped_samples(20, seed=1), striped_samples(6, seed=2)
    first, second = Recorder(), Recorder()
    started = train_dl_model(model_of_rank(rank, 1), train, validation, epochs=1, out_dir=out,
                             progress=first, **ARGS)
    model = model_of_rank(rank, 2)
    resumed = train_dl_model(model, train, validation, epochs=2, out_dir=out, resume=True, progress=second, **ARGS)
    report = {"rank": rank, "world_size": dist.get_world_size(),
              "calls": [len(r.iterations) + len(r.epochs) + len(r.evaluations) + (r.begin is not None)
                        for r in (first, second)],
              "begin": second.begin, "started": without_times(started), "resumed": without_times(resumed),
              "digest": digest(model), "step": int(model.solver_state["step"])}
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

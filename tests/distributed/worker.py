"""One rank of a data-parallel test run (gloo on CPU, FileStore rendezvous):

    python -m tests.distributed.worker --rank R --world W --init file:///path --out DIR \
        --scenarios a,b [--pause-after-step N] [--timeout-s T]

Each scenario's record goes to DIR/<scenario>.rank<R>.npz; a DLError of a scenario to
DIR/<scenario>.rank<R>.err (the other rank meets the same error at the same place). With
--pause-after-step N the last rank writes DIR/paused.rank<R> after step N and sleeps, for a test
that kills it. Any error outside a scenario: message on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scenarios", required=True)
    ap.add_argument("--pause-after-step", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--timeout-s", type=float, default=60.0)
    args = ap.parse_args()

    import numpy as np
    import torch

    from dlbatch.core.errors import DLError
    from dlbatch.distributed import init_process_group

    from . import scenarios

    torch.set_num_threads(1)
    out = Path(args.out)
    init_process_group("gloo", timeout_s=args.timeout_s, init_method=args.init, rank=args.rank,
                       world_size=args.world)

    def pause(step):
        if args.pause_after_step is not None and step == args.pause_after_step and args.rank == args.world - 1:
            (out / f"paused.rank{args.rank}").write_text("paused")
            time.sleep(3600)

    try:
        for name in args.scenarios.split(","):
            kw = {} if args.steps is None else {"steps": args.steps}
            try:
                record = scenarios.run(name, args.rank, args.world, after_step=pause, **kw)
            except DLError as exc:
                if args.pause_after_step is not None:
                    raise
                (out / f"{name}.rank{args.rank}.err").write_text(f"{type(exc).__name__}: {exc}")
                continue
            np.savez(out / f"{name}.rank{args.rank}.npz", **record)
    except DLError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(2)  # no teardown: the process group's peers are gone
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start the ranks of a test run as separate processes (tests.distributed.worker)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_ranks(out: Path, scenarios: list[str], world: int = 2, **options) -> list[subprocess.Popen]:
    """`world` worker processes rendezvousing through a FileStore in `out`; options become
    --flags (pause_after_step=1 -> --pause-after-step 1). stdout/stderr go to out/log.rank<R>."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    flags = [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    procs = []
    for rank in range(world):
        log = open(out / f"log.rank{rank}", "w")
        cmd = [sys.executable, "-W", "ignore::FutureWarning", "-m", "tests.distributed.worker", "--rank", str(rank),
               "--world", str(world), "--init", f"file://{out / 'store'}", "--out", str(out),
               "--scenarios", ",".join(scenarios), *flags]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def log_of(out: Path, rank: int) -> str:
    return (out / f"log.rank{rank}").read_text()

"""`dlbatch train --nproc N`: start the run as a torchrun job (PyTorch's own launcher,
`python -m torch.distributed.run`), N worker processes on this machine, each running the same
`dlbatch train` command without --nproc; torchrun's environment tells each worker its rank and
where to meet the others. With --nnodes M the same command is started on each of M machines
with its --node-rank and the --rdzv-endpoint (HOST:PORT of node 0) all of them can reach."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional

from dlbatch.core.errors import DLParamError

WORKER_MODULE = "dlbatch.cli.app"


def check_layout(nproc: Optional[int], nnodes: int, node_rank: int, endpoint: Optional[str]) -> int:
    """The processes per machine after checking the options together (DLParamError otherwise)."""
    nproc = 1 if nproc is None else nproc
    if nproc < 1:
        raise DLParamError(f"--nproc must be >= 1 (processes on this machine, usually one per GPU), got {nproc}")
    if nnodes < 1:
        raise DLParamError(f"--nnodes must be >= 1, got {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise DLParamError(f"--node-rank must be in 0..{nnodes - 1} for --nnodes {nnodes}, got {node_rank}")
    if nnodes > 1 and not endpoint:
        raise DLParamError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT: an address of the machine with "
                           "--node-rank 0 that every machine can reach, e.g. --rdzv-endpoint 10.0.0.1:29500")
    if endpoint is not None:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise DLParamError(f"--rdzv-endpoint must be HOST:PORT, e.g. 10.0.0.1:29500, got {endpoint!r}")
    return nproc


def torchrun_command(worker_args: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
                     endpoint: Optional[str] = None) -> list[str]:
    """The torchrun command line that runs `dlbatch <worker_args>` in every worker. One machine
    without an endpoint uses torchrun's --standalone (a free local port); otherwise torchrun's
    static rendezvous with node 0 at `endpoint`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if nnodes == 1 and endpoint is None:
        command.append("--standalone")
    else:
        command += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--rdzv-endpoint", endpoint]
    return [*command, "-m", WORKER_MODULE, *worker_args]


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_environment(nproc: int, debug: bool) -> dict[str, str]:
    """The launcher's environment, plus: OMP_NUM_THREADS splitting this machine's cores among
    the workers unless it is set (torchrun would set 1), DLBATCH_DEBUG when --debug was given."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
    if debug:
        env["DLBATCH_DEBUG"] = "1"
    return env


def launch(worker_args: list[str], nproc: int, nnodes: int, node_rank: int, endpoint: Optional[str],
           debug: bool = False) -> int:
    """Run the job to its end; torchrun's exit status (0: every worker finished)."""
    from dlbatch.training.ranks import require_torch_distributed
    require_torch_distributed()
    command = torchrun_command(worker_args, nproc, nnodes, node_rank, endpoint)
    return subprocess.run(command, env=worker_environment(nproc, debug)).returncode

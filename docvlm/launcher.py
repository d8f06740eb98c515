"""`python launch.py --nproc-per-node=N [overrides]`: torchrun's launcher in this process, on one node.

The same as `torchrun --nproc-per-node=N launch.py [overrides]` (torch.distributed.run: the same
elastic agent, rendezvous, environment and OMP_NUM_THREADS=1 per rank), except when the run fails:
torchrun then ends with its own report of ~40 lines (a traceback of torchrun itself and a block per
rank) after the ranks have said what went wrong. Here a user error stays the one line rank 0 printed,
and any other failure adds one line naming the first rank that failed, its exit status and its error
(its traceback is above, as that rank printed it). Several nodes: use torchrun or Slurm as before.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Sequence

from docvlm.errors import LAUNCHER_VARIABLE, USER_ERROR_EXIT, one_line

FLAGS = ("--nproc-per-node", "--nproc_per_node")


PRINT_ONLY = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")


def requested(argv: Sequence[str]) -> bool:
    """The command line asks for N ranks and this process is not already one of torchrun's ranks."""
    asked = any(arg in FLAGS or arg.split("=", 1)[0] in FLAGS for arg in argv)
    return asked and "LOCAL_RANK" not in os.environ


def prints_only(argv: Sequence[str]) -> bool:
    """--help, --cfg job, ...: nothing runs, so one process prints it (not one per rank)."""
    return any(arg.split("=", 1)[0] in PRINT_ONLY for arg in argv)


def split(argv: Sequence[str]) -> tuple[str, list[str]]:
    """(N, the arguments for launch.py): `--nproc-per-node=N` or `--nproc-per-node N`, anywhere."""
    nproc: Optional[str] = None
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in FLAGS:
            nproc = value if eq else next(args, None)
        else:
            rest.append(arg)
    if not nproc:
        from docvlm.errors import UserError

        raise UserError("--nproc-per-node needs a value: the number of ranks (one per GPU), e.g. --nproc-per-node=4")
    return nproc, rest


def launch(script: str, argv: Sequence[str]) -> int:
    """Run `script argv` on N local ranks through torch's elastic agent; the exit status of the run."""
    nproc, rest = split(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's per-rank default, without its 4-line banner
    os.environ[LAUNCHER_VARIABLE] = "1"  # the ranks: no torchrun report follows their error line
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    _quiet_agent()
    try:
        run(parse_args([f"--nproc-per-node={nproc}", script, *rest]))
    except ChildFailedError as err:
        return _failed(err)
    return 0


def _quiet_agent() -> None:
    """The agent's warnings ("Sending process ... closing signal SIGTERM") repeat what the ranks said."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic") or name == "torch.distributed.run":
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _failed(err: Exception) -> int:
    rank, failure = err.get_first_failure()  # type: ignore[attr-defined]
    if any(f.exitcode == USER_ERROR_EXIT for f in err.failures.values()):  # type: ignore[attr-defined]
        return USER_ERROR_EXIT  # rank 0 printed the line; the others were stopped or said the same
    message = failure.message.get("message", "") if isinstance(failure.message, dict) else failure.message
    print(f"error: rank {rank} failed first (exit status {failure.exitcode}): {one_line(str(message))[:500]}",
          file=sys.stderr, flush=True)
    return 1

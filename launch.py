"""docvlm entry point: `torchrun --nproc_per_node=N launch.py [overrides]` or `python launch.py [overrides]`.

Hydra composes conf/ (+ overrides) into a config; docvlm.run does the work on every rank.
With -m (a sweep) every rank runs every job in order, each job in its own folder; a failed job is
recorded and the sweep goes on; rank 0 ends with a table comparing the jobs (sweep.md).
The exit status is non-zero when the job, or any job of the sweep, failed.
`python launch.py --nproc-per-node=N [overrides]` is the same as torchrun on one node, with a short
console when the run fails (docvlm/launcher.py).

A user's mistake (docvlm.errors.UserError, or one of Hydra's errors about the command line) is one line
on rank 0's console and exit status 2, no traceback; DOCVLM_DEBUG=1 or HYDRA_FULL_ERROR=1 shows it.
"""

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

import docvlm.config  # noqa: F401  registers the config schema and resolvers before Hydra composes
from docvlm import launcher, overrides
from docvlm.errors import (USER_ERROR_EXIT, debug_requested, hydra_raises, is_main_rank, print_user_error, run_command,
                           user_message)
from docvlm.models.host_memory import keep_freed_memory
from docvlm.paths import CONF_DIR
from docvlm.sweep import Sweep

SWEEP = Sweep()


# An absolute config_path: Hydra finds conf/ also when launch is imported (tests, wrappers), not only run.
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> Optional[dict[str, Any]]:
    from docvlm.run import run  # torch + transformers: not imported for --help / --cfg

    hydra_cfg = HydraConfig.get()
    with open_dict(cfg):
        cfg.output.dir = hydra_cfg.runtime.output_dir  # under -m: hydra.sweep.dir/job-N
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            return run(cfg)
        except Exception as err:
            if user_message(err) is not None:
                raise _UserErrorExit(err) from None
            _tell_torchrun(err)
            raise
    return SWEEP.run_job(run, cfg, num=hydra_cfg.job.num, overrides=list(hydra_cfg.overrides.task),
                         sweep_dir=str(hydra_cfg.sweep.dir), output_dir=cfg.output.dir)


class _UserErrorExit(BaseException):
    """A user error on its way from the job to cli(). A BaseException: Hydra's handlers, which print
    "Error executing job" and a traceback for an Exception, let it pass."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _tell_torchrun(err: Exception) -> None:
    """Put the error in torchrun's failure summary: the console then shows it even when another rank
    exited first and torchrun stopped rank 0 before it printed (--local-ranks-filter=0 shows rank 0 only).

    The file torch's ErrorHandler would write ($TORCHELASTIC_ERROR_FILE, same JSON), but written
    atomically: torchrun reads it as soon as it sees the rank fail, and a half-written file crashed
    torchrun itself (JSONDecodeError in its agent, seen once in tests after a rank was killed)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return  # not under torchrun
    callstack = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    _write_torchrun_error(Path(path), f"{type(err).__name__}: {err}", callstack)


def _tell_torchrun_user_error(message: str) -> None:
    """A user error's line stands in for the traceback in torchrun's failure summary (no stack: it would
    be ~25 lines per rank of nothing the user needs)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        _write_torchrun_error(Path(path), message, message)


def _write_torchrun_error(path: Path, message: str, callstack: str) -> None:
    from docvlm.outputs import atomic_write_text

    data = {"message": {"message": message,
                        "extraInfo": {"py_callstack": callstack, "timestamp": str(int(time.time()))}}}
    atomic_write_text(path, json.dumps(data))


def resolve_printed_config(argv: list[str]) -> list[str]:
    """`--cfg job` shows the config as the job will see it: Hydra leaves ${...} unresolved without --resolve."""
    asks_job = any(a in ("--cfg=job", "-c=job") for a in argv) or any(
        a in ("--cfg", "-c") and b == "job" for a, b in zip(argv, argv[1:]))
    return argv + ["--resolve"] if asks_job and "--resolve" not in argv else argv


def cli() -> int:
    if launcher.requested(sys.argv[1:]):  # python launch.py --nproc-per-node=N: torchrun's agent in-process
        if not launcher.prints_only(sys.argv[1:]):
            return run_command(lambda: launcher.launch(os.path.abspath(__file__), sys.argv[1:]))
        sys.argv = [sys.argv[0], *launcher.split(sys.argv[1:])[1]]
    sys.argv = resolve_printed_config(sys.argv)
    debug = debug_requested()
    try:
        with hydra_raises():
            main()
    except _UserErrorExit as stop:
        if not debug:
            return _user_error(user_message(stop.error) or str(stop.error))
        job_error = stop.error
    except Exception as err:
        translated = overrides.translate(err)  # unknown key, unknown option, bad syntax: Hydra's own errors
        message = str(translated) if translated is not None else user_message(err) or _output_dir_error(err)
        if message is None or debug:
            raise
        return _user_error(message)
    else:
        status = SWEEP.finish()
        _leave_process_group()
        return status
    _tell_torchrun(job_error)
    raise job_error  # outside the except clause: its own traceback and causes, nothing of ours chained


def _output_dir_error(err: BaseException) -> Optional[str]:
    """Hydra creates output.dir (its run dir) and writes .hydra/ there before the job starts: an OSError
    from there, not from the job, is an output folder the user cannot write to."""
    codes = [frame.f_code for frame, _ in traceback.walk_tb(err.__traceback__)]
    in_setup = any(code.co_name == "run_job" for code in codes) and main.__wrapped__.__code__ not in codes
    if not isinstance(err, OSError) or not in_setup:
        return None
    path = str(err.filename or "?").split(f"{os.sep}.hydra")[0]
    return (f"output.dir={path} is not a writable folder ({err.strerror or err}): "
            "give a folder you can write to with output.dir=FOLDER")


def _user_error(message: str) -> int:
    """One line on rank 0, the same line in torchrun's failure summary, every rank out together."""
    print_user_error(message)
    _tell_torchrun_user_error(message)
    _leave_process_group(wait_for_others=False)  # a rank alone with its error must not wait at a barrier
    if not is_main_rank():
        time.sleep(OTHER_RANKS_EXIT_AFTER_S)
    return USER_ERROR_EXIT


# torchrun stops every rank as soon as one exits non-zero: the others wait a moment so that rank 0,
# which prints the line, is not stopped before it did (they all hit the same error at about once).
OTHER_RANKS_EXIT_AFTER_S = 1.0


def _leave_process_group(wait_for_others: bool = True) -> None:
    """Leave together: torchrun stops every rank once one exits non-zero, maybe before rank 0 wrote sweep.md.
    (Left without destroying it, NCCL prints a warning on each rank at exit.)"""
    if "docvlm.dist" not in sys.modules:  # --help, --cfg: no job ran, torch was never imported
        return
    import torch.distributed as torch_dist

    if torch_dist.is_initialized():
        if wait_for_others:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


if __name__ == "__main__":
    keep_freed_memory()  # first, while this is the process's only thread (docvlm/models/host_memory.py)
    sys.exit(cli())

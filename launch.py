"""docvlm entry point: `torchrun --nproc_per_node=N launch.py [overrides]` or `python launch.py [overrides]`.

Hydra composes conf/ (+ overrides) into a config; docvlm.run does the work on every rank.
With -m (a sweep) every rank runs every job in order, each job in its own folder; a failed job is
recorded and the sweep goes on; rank 0 ends with a table comparing the jobs (sweep.md).
The exit status is non-zero when the job, or any job of the sweep, failed.
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
            _tell_torchrun(err)
            raise
    return SWEEP.run_job(run, cfg, num=hydra_cfg.job.num, overrides=list(hydra_cfg.overrides.task),
                         sweep_dir=str(hydra_cfg.sweep.dir), output_dir=cfg.output.dir)


def _tell_torchrun(err: Exception) -> None:
    """Put the error in torchrun's failure summary: the console then shows it even when another rank
    exited first and torchrun stopped rank 0 before it printed (--local-ranks-filter=0 shows rank 0 only).

    The file torch's ErrorHandler would write ($TORCHELASTIC_ERROR_FILE, same JSON), but written
    atomically: torchrun reads it as soon as it sees the rank fail, and a half-written file crashed
    torchrun itself (JSONDecodeError in its agent, seen once in tests after a rank was killed)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return  # not under torchrun
    from docvlm.outputs import atomic_write_text

    callstack = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    data = {"message": {"message": f"{type(err).__name__}: {err}",
                        "extraInfo": {"py_callstack": callstack, "timestamp": str(int(time.time()))}}}
    atomic_write_text(Path(path), json.dumps(data))


def resolve_printed_config(argv: list[str]) -> list[str]:
    """`--cfg job` shows the config as the job will see it: Hydra leaves ${...} unresolved without --resolve."""
    asks_job = any(a in ("--cfg=job", "-c=job") for a in argv) or any(
        a in ("--cfg", "-c") and b == "job" for a, b in zip(argv, argv[1:]))
    return argv + ["--resolve"] if asks_job and "--resolve" not in argv else argv


def cli() -> int:
    sys.argv = resolve_printed_config(sys.argv)
    main()
    status = SWEEP.finish()
    _leave_process_group()
    return status


def _leave_process_group() -> None:
    """Leave together: torchrun stops every rank once one exits non-zero, maybe before rank 0 wrote sweep.md."""
    if "docvlm.dist" not in sys.modules:  # --help, --cfg: no job ran, torch was never imported
        return
    import torch.distributed as torch_dist

    if torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(cli())

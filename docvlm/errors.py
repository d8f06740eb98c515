"""Errors a user can cause (config, paths, ground truth, weights): shown as ONE clear line, no traceback.

Raise `UserError` with a message that names the key or path, the problem and the fix. The entry points
(launch.py, the `docvlm` subcommands) print it once (rank 0) and exit with USER_ERROR_EXIT; internal
bugs keep their traceback. DOCVLM_DEBUG=1 or HYDRA_FULL_ERROR=1 shows the traceback of a user error too.
"""

from __future__ import annotations

import difflib
import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

USER_ERROR_EXIT = 2  # like argparse's usage errors; an internal bug exits 1
LAUNCHER_VARIABLE = "DOCVLM_LAUNCHER"  # set by `python launch.py --nproc-per-node=N` for its ranks
TORCHRUN_NOTE = ("note: torchrun prints its own failure report after this line; on one node "
                 "`python launch.py --nproc-per-node=N ...` runs the same ranks and prints only the line above")
DEBUG_VARIABLES = ("DOCVLM_DEBUG", "HYDRA_FULL_ERROR")


class UserError(ValueError):
    """A mistake in what the user asked for, not a bug in docvlm: printed as one line.

    A ValueError: most of these were ValueErrors before, and callers that catch those still do."""


_HYDRA_FULL_ERROR_IS_OURS = False  # set while launch.py has set HYDRA_FULL_ERROR itself (hydra_raises)


def debug_requested() -> bool:
    """The user asked for tracebacks of user errors too."""
    names = ("DOCVLM_DEBUG",) if _HYDRA_FULL_ERROR_IS_OURS else DEBUG_VARIABLES
    return any(os.environ.get(name, "") not in ("", "0") for name in names)


@contextmanager
def hydra_raises() -> Iterator[None]:
    """Hydra prints its own errors (several lines, a traceback) unless HYDRA_FULL_ERROR is set; set, it
    raises them to the caller, which decides: one line for a user error, the full traceback for a bug.
    While it is our setting, not the user's, it does not ask for tracebacks (debug_requested)."""
    global _HYDRA_FULL_ERROR_IS_OURS
    if os.environ.get("HYDRA_FULL_ERROR") is not None:
        yield  # the user's own setting
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    _HYDRA_FULL_ERROR_IS_OURS = True
    try:
        yield
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        _HYDRA_FULL_ERROR_IS_OURS = False


def user_message(err: BaseException) -> Optional[str]:
    """The one line to show when `err` is the user's mistake; None for an internal bug.

    A failure that every failing rank reached through a UserError (dist.JobFailed) counts too."""
    if isinstance(err, UserError):
        return one_line(str(err))
    message = getattr(err, "user_message", None)  # dist.JobFailed
    return one_line(message) if message else None


def one_line(text: str) -> str:
    return " ".join(text.split())


def is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def print_user_error(message: str) -> None:
    """Rank 0 prints the line; the other ranks stay silent (they hit the same error). Under plain torchrun,
    whose ~40-line report of a failed rank follows whatever the rank printed (a rank cannot turn it
    off), a second line says so and names the launcher that prints only the first."""
    if is_main_rank():
        print(f"error: {message}", file=sys.stderr, flush=True)
        if under_plain_torchrun():
            print(TORCHRUN_NOTE, file=sys.stderr, flush=True)


def under_plain_torchrun() -> bool:
    """A rank of torchrun's elastic agent that docvlm's own launcher did not start."""
    return "TORCHELASTIC_RUN_ID" in os.environ and LAUNCHER_VARIABLE not in os.environ


def did_you_mean(word: str, choices: Sequence[str]) -> Optional[str]:
    """The choice a near miss meant: a close spelling of the whole dotted key, else the one key with the
    same last part (`batch_size` -> `processing.batch_size`), else a close spelling of the last part."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    if close:
        return close[0]
    leaf = word.rsplit(".", 1)[-1]
    by_leaf: dict[str, list[str]] = {}
    for choice in choices:
        by_leaf.setdefault(choice.rsplit(".", 1)[-1], []).append(choice)
    same = by_leaf.get(leaf, [])
    if len(same) == 1:
        return same[0]
    near = [c for name in difflib.get_close_matches(leaf, list(by_leaf), n=2, cutoff=0.8) for c in by_leaf[name]]
    return near[0] if len(near) == 1 else None


def run_command(command: Callable[[], int]) -> int:
    """A console command's exit status: a user error is its one line and USER_ERROR_EXIT (a traceback
    with DOCVLM_DEBUG=1); anything else propagates with its traceback."""
    try:
        return command()
    except Exception as err:
        message = user_message(err)
        if message is None or debug_requested():
            raise
        print_user_error(message)
        return USER_ERROR_EXIT

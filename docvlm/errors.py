"""Errors a user can cause (config, paths, ground truth, weights): shown as ONE clear line, no traceback.

Raise `UserError` with a message that names the key or path, the problem and the fix. The entry points
(launch.py, the `docvlm` subcommands) print it once (rank 0) and exit non-zero; internal bugs keep
their traceback. DOCVLM_DEBUG=1 or HYDRA_FULL_ERROR=1 shows the traceback of a user error too.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for, not a bug in docvlm: printed as one line."""

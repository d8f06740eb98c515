"""One run at a time in an output folder: rank 0 holds output.dir/.docvlm.lock for the whole job.

Two runs writing into the same output.dir would both append to the part files (the same documents
recorded twice) and `output.overwrite=true` in the second would delete the first one's records while
it writes them. The second run therefore stops at the start, naming the run that holds the folder.

The lock is an flock() on the lock file, not the file's existence: the kernel drops it when the
holding process ends in any way (exit, exception, kill -9, a torchrun restart), so a crash never
leaves a stale lock behind and no pid/host guessing is needed. The file stays (an empty lock file is
harmless, and deleting it would race with a run opening it); it names the last holder (pid, host,
start time) for the message. On a file system without flock() support the run goes on unlocked,
with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Optional

from docvlm.errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = ".docvlm.lock"  # a dot file: never a document, and output.overwrite leaves it alone
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class OutputLock:
    """acquire() once (rank 0), release() always (a no-op when not held)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise UserError(f"output.dir={self.out_dir} is in use by another docvlm run ({self._holder()}): "
                                "wait for it to end, or choose another output.dir") from None
            if err.errno in _UNSUPPORTED:
                log.warning("output.dir=%s: this file system cannot lock files (%s); a second run into the same "
                            "folder would not be stopped", self.out_dir, err.strerror)
                return
            raise
        self._fd = fd
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        os.write(fd, (json.dumps(holder) + "\n").encode())

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _holder(self) -> str:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "it is starting"  # the holder has not written its name yet

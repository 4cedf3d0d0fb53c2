"""Tie a ``torchrun`` worker's life to its launcher's.

``torchrun`` starts each worker in a session of its own (``start_new_session``), so killing the launcher's
process group -- what a user's ``kill -9 -PGID`` or a scheduler that signals the job's process group does --
kills the launcher only: the workers go on, orphaned, writing into the output folder while the user's rerun
starts writing the same cases. With :func:`die_with_launcher` (``$ldct_clip.engine.die_with_launcher()`` in the
multi-GPU configs' ``initialize``) the kernel kills each worker when the launcher dies, so a killed job is
entirely gone and a rerun owns its outputs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_launcher"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_launcher() -> bool:
    """Under ``torchrun`` on Linux: have this process SIGKILLed when its parent (the launcher) dies.

    Returns whether that was arranged (False outside ``torchrun`` or Linux, where it does nothing).
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
    return True

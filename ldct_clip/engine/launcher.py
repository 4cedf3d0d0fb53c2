"""The life of a ``torchrun`` worker: tied to its launcher's at the start, ended cleanly at the finish.

``torchrun`` starts each worker in a session of its own (``start_new_session``), so killing the launcher's
process group -- what a user's ``kill -9 -PGID`` or a scheduler that signals the job's process group does --
kills the launcher only: the workers go on, orphaned, writing into the output folder while the user's rerun
starts writing the same cases. With :func:`die_with_launcher` (``$ldct_clip.engine.die_with_launcher()`` in the
multi-GPU configs' ``initialize``) the kernel kills each worker when the launcher dies, so a killed job is
entirely gone and a rerun owns its outputs.

At the finish, :func:`exit_worker` (last in the multi-GPU configs' ``finalize``) ends a worker that has done its
work without tearing the interpreter down. Gloo's worker threads outlive ``destroy_process_group`` (the
DistributedDataParallel reducer keeps the process group alive), and one of them may still be dropping the tensors
of the last collective (a metric's ``all_gather``) when the interpreter starts finalizing. Dropping a tensor that
has a Python object needs the GIL; a thread that asks for it during finalization is ended by CPython, inside a
destructor, and the C++ runtime aborts the whole process: "terminate called without an active exception",
SIGABRT, and a failed job after a finished training (pytorch/pytorch#190489). No torch API joins those threads,
so the worker leaves before finalization.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys

import torch.distributed as dist

__all__ = ["die_with_launcher", "exit_worker"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def die_with_launcher() -> bool:
    """Under ``torchrun`` on Linux: have this process SIGKILLed when its parent (the launcher) dies.

    Returns whether that was arranged (False outside ``torchrun`` or Linux, where it does nothing).
    """
    if not _under_torchrun() or not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def exit_worker() -> None:
    """End a ``torchrun`` worker whose workflow finished, with exit status 0 and no interpreter finalization.

    It destroys the default process group, runs the ``atexit`` functions (logging's flush and close of its files,
    multiprocessing's reaping of DataLoader worker processes), flushes stdout and stderr, then leaves with
    ``os._exit(0)``. Only a finished workflow reaches ``finalize``, so a failed one still exits with its error.

    Outside ``torchrun`` it only destroys the process group (if any) and returns.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if not _under_torchrun():
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

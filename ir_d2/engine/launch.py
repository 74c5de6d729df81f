"""
detectron2's ``launch`` with workers that close their process group when the job returns, and a
launcher that tells a worker dying on its way out from a job that failed.

detectron2's workers return from ``main_func`` and exit with the process group still open. With
gloo (CPU) the first rank to exit closes its sockets while a peer's transport thread may still be
reading from them; the peer then dies of an uncaught ``gloo::IoException`` (SIGABRT) after a job
that succeeded, and ``launch`` reports the run as failed. Here every rank meets the others at a
barrier and closes the group (``destroy_process_group``) before it exits.

A worker can still be killed by a signal after that: CI saw one two-process run fail with a
worker's SIGABRT once more with the group closed (it never reproduced here; the native code that
aborts is not known, and the interpreter's teardown runs such code after the job). So each worker
leaves a marker once its job has returned and its group is closed; when a worker dies of a signal
and every worker of this machine has left its marker, the run completed: :func:`launch` logs a
warning naming the worker and the signal and returns. A worker that dies before its marker (in the
job, or at the closing barrier) still fails the run with torch's exception, as before.
"""

import logging
import os
import tempfile

import torch.distributed as dist
from detectron2.engine import launch as _d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm
from torch.multiprocessing import ProcessExitedException

__all__ = ["launch"]

logger = logging.getLogger(__name__)


def close_process_group():
    """Wait for every rank, then close the default process group (and the groups made from it,
    detectron2's gloo and local groups among them); a no-op in a single process. The worker
    exits next, so nothing uses those groups afterwards."""
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()
        dist.destroy_process_group()


def _marker(done_dir: str, local_rank: int) -> str:
    return os.path.join(done_dir, f"local_rank{local_rank}.done")


def _run_then_close(main_func, done_dir, *args):
    result = main_func(*args)
    local_rank = comm.get_local_rank()
    close_process_group()
    with open(_marker(done_dir, local_rank), "w") as f:  # the job returned, the group is closed
        f.write(str(os.getpid()))
    return result


def _died_after_its_job(error: ProcessExitedException, done_dir: str, nprocs: int) -> bool:
    """Whether ``error`` is a worker killed by a signal after every local worker finished."""
    if error.signal_name is None:  # a non-zero exit code: the worker ended itself, as a failure
        return False
    return all(os.path.isfile(_marker(done_dir, r)) for r in range(nprocs))


def launch(
    main_func,
    num_gpus_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """:func:`detectron2.engine.launch` with the same arguments; each worker closes its process
    group after ``main_func`` returns, and a worker killed by a signal after every worker of this
    machine finished its job is logged, not raised (see the module docstring). A single process
    runs ``main_func`` directly and returns its result, as detectron2's does."""
    if num_machines * num_gpus_per_machine <= 1:
        return _d2_launch(
            main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout
        )
    with tempfile.TemporaryDirectory(prefix="ir_d2_launch_") as done_dir:
        try:
            return _d2_launch(
                _run_then_close,
                num_gpus_per_machine,
                num_machines=num_machines,
                machine_rank=machine_rank,
                dist_url=dist_url,
                args=(main_func, done_dir, *args),
                timeout=timeout,
            )
        except ProcessExitedException as e:
            if not _died_after_its_job(e, done_dir, num_gpus_per_machine):
                raise
            logger.warning(
                f"launch: worker {e.error_index} (pid {e.error_pid}) was killed by "
                f"{e.signal_name} while exiting, after every worker had finished its job and "
                "closed its process group; the run completed"
            )
            return None

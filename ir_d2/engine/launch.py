"""
detectron2's ``launch`` with workers that close their process group when the job returns.

detectron2's workers return from ``main_func`` and exit with the process group still open. With
gloo (CPU) the first rank to exit closes its sockets while a peer's transport thread may still be
reading from them; the peer then dies of an uncaught ``gloo::IoException`` (SIGABRT) after a job
that succeeded, and ``launch`` reports the run as failed. Here every rank meets the others at a
barrier and closes the group (``destroy_process_group``) before it exits.
"""

import torch.distributed as dist
from detectron2.engine import launch as _d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT
from detectron2.utils import comm

__all__ = ["launch"]


def close_process_group():
    """Wait for every rank, then close the default process group (and the groups made from it,
    detectron2's gloo and local groups among them); a no-op in a single process. The worker
    exits next, so nothing uses those groups afterwards."""
    if dist.is_available() and dist.is_initialized():
        comm.synchronize()
        dist.destroy_process_group()


def _run_then_close(main_func, *args):
    result = main_func(*args)
    close_process_group()
    return result


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
    group after ``main_func`` returns (see the module docstring). A single process runs
    ``main_func`` directly and returns its result, as detectron2's does."""
    return _d2_launch(
        _run_then_close,
        num_gpus_per_machine,
        num_machines=num_machines,
        machine_rank=machine_rank,
        dist_url=dist_url,
        args=(main_func, *args),
        timeout=timeout,
    )

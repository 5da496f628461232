"""Where the cells of an experiment grid run: one after another in this process, or as Ray tasks.

An executor maps a picklable, module-level function over a list of cells and returns the results in
the order of the cells, whatever order they finish in, so a grid's tables come out the same under
every executor. ``done(i, result)`` is called in this process as each cell finishes.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from transferkit.errors import TransferkitError
from transferkit.registry import Registry

EXECUTORS: Registry = Registry("executor")
INSTALL_RAY = ("--executor ray needs Ray; install it with `pip install 'transferkit[ray]'` "
               "(or run without --executor ray).")


@EXECUTORS.register("serial")
class Serial:
    """Every cell in this process, one after another (the default)."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None:
            raise TransferkitError(f"--workers {workers} sets how many Ray tasks run at once; add --executor ray "
                                   "or leave --workers out.")
        if address is not None:
            raise TransferkitError(f"--address '{address}' names a Ray cluster; add --executor ray or leave "
                                   "--address out.")

    def map(self, fn: Callable[[Any], Any], cells: Sequence, done: Callable[[int, Any], None]) -> list:
        results = []
        for i, cell in enumerate(cells):
            results.append(fn(cell))
            done(i, results[-1])
        return results


@EXECUTORS.register("ray")
class Ray:
    """Every cell as a Ray task of one CPU: on a local Ray of ``workers`` CPUs, or on the cluster at ``address``.

    The run directories must be on a file system that every node and this process see (the driver
    reads them for the report). Each task runs with one torch thread, in this process's working
    directory, so relative paths in a config mean the same in every task.
    """

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise TransferkitError(f"--workers must be >= 1; got {workers}.")
        if workers is not None and address is not None:
            raise TransferkitError(f"--workers sets the CPUs of a local Ray, and the cluster at '{address}' has its "
                                   "own; leave --workers out.")
        self.workers = workers or os.cpu_count() or 1
        self.address = address
        import_ray()  # refused here, before anything is written

    def map(self, fn: Callable[[Any], Any], cells: Sequence, done: Callable[[int, Any], None]) -> list:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            with warnings.catch_warnings():  # Ray's notice on accelerator variables says nothing about this run
                warnings.simplefilter("ignore", FutureWarning)
                if self.address is None:
                    ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.WARNING)
                else:
                    ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        task = ray.remote(num_cpus=1)(_in_task)  # a task lost with its node is retried (Ray's default), afresh
        refs = [task.remote(fn, cell, os.getcwd()) for cell in cells]
        where = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(cells)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = where[ready[0]]
                results[i] = _get(ray, ready[0])
                done(i, results[i])
        finally:
            for ref in pending:  # after an error: the cells not finished yet are left to a --resume
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()
        return results


def import_ray():
    """The ``ray`` module, with usage statistics off; one sentence on how to install it when it is missing."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise TransferkitError(INSTALL_RAY) from None
    return ray


def _in_task(fn: Callable[[Any], Any], cell: Any, cwd: str) -> Any:
    """``fn(cell)`` inside a Ray task: one torch thread (the same sums as a single-threaded serial run)."""
    import torch

    torch.set_num_threads(1)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return fn(cell)


def _get(ray, ref) -> Any:
    """The task's result; a user-input error raised in the task is raised here as it was (one sentence)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, TransferkitError):
            raise e.cause from None
        raise


def create_executor(name: str, workers: int | None = None, address: str | None = None):
    """The executor registered as ``name`` (``serial`` or ``ray``), its options checked before any run starts.

    Example:
        >>> create_executor("ray", workers=4).map(run_cell, cells, lambda i, r: None)
    """
    return EXECUTORS.get(name)(workers=workers, address=address)

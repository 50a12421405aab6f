"""
Where ``benchmarks.run``'s jobs run: a pool of processes on this machine (the default), or the tasks of a Ray cluster.

A backend only runs job functions and hands back what they return; the driver writes the results, so the machines that
run the jobs need no disk in common with it. Both are context managers that yield ``(job, result)`` pairs as jobs finish,
where ``result()`` returns the job's value or raises its error, so that one failed job does not lose the others.
"""

import functools
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

Job = TypeVar("Job", bound=tuple[Any, ...])  # the positional arguments of one call of the job function
Result = Callable[[], Any]  # the job's return value, or its exception raised

RAY_MISSING = (
    "--backend ray needs Ray, an optional extra of sb3-polygrad: pip install -e '.[cluster]' "
    "(on the driver and on every node of the cluster)"
)


class LocalBackend:
    """
    Jobs in a pool of processes on this machine.

    :param workers: processes, i.e. jobs at once
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __enter__(self) -> "LocalBackend":
        self.pool = ProcessPoolExecutor(self.workers)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # On an interrupt, queued jobs are dropped rather than run for a driver that no longer collects them.
        self.pool.shutdown(wait=True, cancel_futures=exc_type is not None)

    def describe(self) -> str:
        """:return: one line on where the jobs run, for the preset's machine.txt"""
        return f"local process pool of {self.workers} workers"

    def results(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Result]]:
        """
        :param function: the job function, importable by the worker processes
        :param jobs: its arguments, one tuple per job
        :return: ``(job, result)`` in the order the jobs finish
        """
        futures = {self.pool.submit(function, *job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result


def import_ray() -> ModuleType:
    """:return: the ``ray`` module; an ImportError that says how to install it where it is missing"""
    try:
        import ray
    except ImportError as error:
        raise ImportError(RAY_MISSING) from error
    return ray


def gpus_per_job(device: str, cluster_gpus: float) -> int:
    """
    The GPUs each job asks Ray for, from the preset's torch device.

    :param device: ``"cpu"``, ``"cuda"``/``"cuda:k"``, or ``"auto"`` (a GPU where there is one: here, in the cluster)
    :param cluster_gpus: the GPUs of the whole cluster
    :return: 1 for a job on a GPU, else 0; a ValueError for a CUDA device on a cluster without GPUs, whose tasks would
        otherwise wait forever
    """
    if device.startswith("cuda"):
        if cluster_gpus <= 0:
            raise ValueError(f"the preset's device is {device!r}, but the Ray cluster has no GPU")
        return 1
    return int(device == "auto" and cluster_gpus > 0)


def shipped_code() -> dict[str, Any]:
    """
    The Ray runtime environment that ships this ``benchmarks`` package and ``sb3_polygrad`` to every worker.

    Workers then run the driver's code (its presets, its PolyGRAD), whatever commit a node has installed; the nodes need
    only the dependencies. Found without importing ``sb3_polygrad``, which would load torch into the driver.

    :return: ``ray.init``'s ``runtime_env``
    """
    spec = importlib.util.find_spec("sb3_polygrad")
    assert spec is not None and spec.submodule_search_locations, "sb3_polygrad is not installed"
    packages = [Path(__file__).parent, Path(spec.submodule_search_locations[0])]
    return {"py_modules": [str(path) for path in packages], "excludes": ["/results/", "__pycache__/"]}


class RayBackend:
    """
    Jobs as Ray tasks, each asking for one CPU (jobs run torch on one thread) and a GPU where the preset's device is one.

    :param address: a running cluster (``"auto"``: the one this machine belongs to; ``"ray://host:10001"``: through the
        Ray Client); ``None`` starts a Ray instance on this machine for this run
    :param local_cpus: the CPUs of that local instance
    :param device: the preset's torch device
    """

    def __init__(self, address: str | None, local_cpus: int, device: str) -> None:
        self.ray = import_ray()
        self.address = address
        self.local_cpus = local_cpus
        self.device = device

    def __enter__(self) -> "RayBackend":
        # A new local instance has as many CPUs as asked for; joining a cluster, Ray refuses resource arguments.
        resources = {"num_cpus": self.local_cpus} if self.address is None else {}
        self.ray.init(address=self.address or "local", runtime_env=shipped_code(), **resources)
        try:
            self.cluster = self.ray.cluster_resources()
            self.gpus = gpus_per_job(self.device, self.cluster.get("GPU", 0))
        except BaseException:
            self.ray.shutdown()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Ends this driver's job: the cluster cancels the tasks it still holds.
        self.ray.shutdown()

    def describe(self) -> str:
        """:return: one line on where the jobs run, for the preset's machine.txt"""
        where = f"Ray cluster at {self.address}" if self.address else "local Ray instance"
        cpus, gpus = self.cluster.get("CPU", 0), self.cluster.get("GPU", 0)
        return f"{where} of {cpus:g} CPUs and {gpus:g} GPUs, 1 CPU and {self.gpus} GPU per job"

    def results(self, function: Callable[..., Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Result]]:
        """
        :param function: the job function, importable from the shipped packages (pickled by reference)
        :param jobs: its arguments, one tuple per job
        :return: ``(job, result)`` in the order the jobs finish
        """
        task = self.ray.remote(function).options(num_cpus=1, num_gpus=self.gpus)
        pending = {task.remote(*job): job for job in jobs}
        while pending:
            (ready,), _ = self.ray.wait(list(pending), num_returns=1)
            yield pending.pop(ready), functools.partial(self.ray.get, ready)

"""Where the shared experiment runs: in this process (the default), or as shards of images on Dask.

The experiment's work is per image, so `experiment` cuts it into shards, each one task (setup, attack key or
the clean set, image indices), and runs them on `dask.distributed`; this module is the one place that talks to
Dask. The setting is `config.scheduler()` (``$CAUSADV_SCHEDULER``, or ``make paper WORKERS=N``):

    unset                  in this process, as before (`client()` is None)
    local:N                a ``LocalCluster`` of N worker processes, one thread each, TensorFlow's threads too
    tcp://HOST:PORT        an existing Dask scheduler (``dask scheduler``; ``dask worker tcp://HOST:PORT`` on
                           each machine; see the README, "Running on a cluster")

    >>> c = shards.client()                        # made once per process and setting, None when unset
    >>> shards.spans(100, 64)                      # [(0, 64), (64, 100)]
    >>> shards.compute([(f, a, b), (f, c, d)], "attacks")   # [f(a, b), f(c, d)], in task order, progress bar

Dask does the scheduling, the retries and the data transfer: a worker that dies mid-run has its tasks rerun
elsewhere (the scheduler's ``allowed-failures``), and results come back to this process as Python objects
(numpy arrays), merged by the caller in task order. Each worker process keeps what it loaded (models, traced
TensorFlow functions) between tasks: tasks are plain functions of the library, whose per-process memos
(`zoo.get`, `zoo.resolve`) live on in the worker. TensorFlow's intra- and inter-op threads are set to the
worker's thread count (`TensorFlowThreads`, a worker plugin run before a worker's first task).
"""
from __future__ import annotations

import atexit
import warnings

import dask
import tensorflow as tf
from distributed import Client, LocalCluster, WorkerPlugin, as_completed
from tqdm import tqdm

from . import checks, config

__all__ = ["client", "sharded", "spans", "compute", "close", "TensorFlowThreads"]

_CLIENTS: dict[str, Client] = {}
#: Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, so that glibc hands freed memory back at once; TensorFlow
#: then maps and faults its large buffers in again at every op: measured +30% CPU per attack shard
#: (benchmarks/scale_out.py). A LocalCluster's workers keep glibc's default (README: the same for a cluster).
_SPAWN_ENV = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


class TensorFlowThreads(WorkerPlugin):
    """Set TensorFlow's intra- and inter-op thread pools of a worker to its Dask thread count, before its first
    TensorFlow op (a worker that already ran TensorFlow keeps its pools, with a warning)."""

    name = "causadv-tensorflow-threads"

    def setup(self, worker) -> None:
        n = int(worker.state.nthreads)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError as e:       # TensorFlow was initialised in this worker already
            warnings.warn(f"worker {worker.address}: TensorFlow's threads not set to {n} ({e})", RuntimeWarning)


def sharded() -> bool:
    """Whether the shared experiment runs on Dask (`config.scheduler()` is set)."""
    return config.scheduler() is not None


def client(setting: str | None = None) -> Client | None:
    """The Dask client of `setting` (default `config.scheduler()`), made once per process; None when unset.

    ``local:N`` starts a ``LocalCluster(n_workers=N, threads_per_worker=1, processes=True)`` (no dashboard,
    glibc's own malloc trimming: `_SPAWN_ENV`); its workers inherit this process's environment (``CAUSADV_DATA``,
    ``CAUSADV_CACHE``). ``tcp://HOST:PORT``
    connects to a running scheduler, whose workers must see the same data and, for resuming, one cache."""
    setting = config.scheduler() if setting is None else setting
    if setting is None:
        return None
    c = _CLIENTS.get(setting)
    if c is not None and c.status == "running":
        return c
    if setting.startswith("local:"):
        n = checks.positive_int(int(setting.split(":", 1)[1]), "local workers")
        with dask.config.set(_SPAWN_ENV):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        c = Client(cluster)
    else:
        c = Client(setting)
    c.register_plugin(TensorFlowThreads())
    _CLIENTS[setting] = c
    return c


def close() -> None:
    """Close every client made here (and the LocalClusters they started)."""
    while _CLIENTS:
        _, c = _CLIENTS.popitem()
        cluster = c.cluster
        c.close()
        if cluster is not None:
            cluster.close()


atexit.register(close)


def spans(n: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of the shards of `n` images, `size` each (the last one shorter), in order."""
    size = checks.positive_int(size, "shard size")
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def compute(tasks: list[tuple], desc: str, progress: bool | None = True) -> list:
    """``[fn(*args) for fn, *args in tasks]``, run on `client()`'s workers, in task order.

    A progress bar counts finished tasks (progress None or True: shown; False: not). A task's exception is
    raised here; a worker lost mid-task has the task rerun on another by Dask."""
    c = client()
    if c is None:
        raise RuntimeError(f"shards.compute: no scheduler set ({config.SCHEDULER_ENV} is unset)")
    futures = [c.submit(fn, *args, pure=False) for fn, *args in tasks]
    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="shard", disable=progress is False):
        pass
    return c.gather(futures)

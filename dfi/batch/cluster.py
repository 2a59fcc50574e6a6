"""The Dask cluster a batch runs on: an existing one (``--scheduler ADDRESS``) or a local
one started for the job on 127.0.0.1, and the cache each worker keeps between rows.

On a machine with GPUs the local cluster has one worker per GPU, each seeing its own GPU
first: ``CUDA_VISIBLE_DEVICES`` is rotated per worker (worker i sees GPU i, i+1, …, 0, …,
i−1), as dask-cuda's ``LocalCUDACluster`` does, and with dask-cuda installed that cluster
is used. So on a batch worker ``--device gpu:N`` counts from the worker's own GPU: ``auto``
and ``gpu`` (= ``gpu:0``) give every worker its own device, ``gpu:1`` its neighbour's."""
from __future__ import annotations

import logging
import os
from typing import Optional

from ..core.errors import SettingError

#: things a worker loads once and keeps for every row it runs (networks, attribute vectors)
_LOCAL_CACHE: dict = {}


def default_workers() -> int:
    """One worker per GPU, else half the cores (at least one)."""
    from ..core.backend import gpu_count

    gpus = gpu_count()
    return gpus if gpus else max(1, len(os.sched_getaffinity(0)) // 2)


def open_client(scheduler: Optional[str] = None, workers: Optional[int] = None, *, timeout: float = 10.0):
    """A ``distributed.Client``: connected to ``scheduler``, or to a local cluster of
    ``workers`` worker processes (one thread each) listening on 127.0.0.1 only, closed
    with the client. With GPUs: one worker per GPU (at most ``workers``), each seeing its
    own GPU first (dask-cuda's cluster when it is installed, else :func:`worker_gpus`)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("batch runs need Dask distributed: pip install 'dfi[cluster]'") from None
    logging.getLogger("distributed").setLevel(logging.ERROR)  # its INFO lines are not for dfi's users
    if scheduler is not None:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} ({exc})".splitlines()[0]) \
                from None
    if workers is not None and workers < 1:
        raise SettingError(f"--workers {workers} must be at least 1")
    count = workers or default_workers()
    from ..core.backend import gpu_count

    gpus = gpu_count()
    if gpus:
        count = min(count, gpus)
    threads = str(max(1, len(os.sched_getaffinity(0)) // count))
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        LocalCUDACluster = None
    if gpus and LocalCUDACluster is not None:
        cluster = LocalCUDACluster(n_workers=count, threads_per_worker=1,
                                   host="127.0.0.1", dashboard_address=None,
                                   scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR)
    elif gpus:
        cluster = _gpu_cluster(worker_gpus(count), {"DFI_WORKER_THREADS": threads})
    else:
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, scheduler_kwargs={"dashboard": False},
                               silence_logs=logging.ERROR, env={"DFI_WORKER_THREADS": threads})
    client = Client(cluster)
    client._dfi_owns_cluster = cluster  # closed with the client (see close_client)
    return client


def worker_gpus(count: int, visible: Optional[str] = None) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``count`` workers, one GPU each: the GPUs this
    process sees (``visible``, default its own ``CUDA_VISIBLE_DEVICES``, else 0…count−1)
    rotated so that worker i's first GPU is the i-th."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    ids = ids or [str(i) for i in range(count)]
    if count > len(ids):
        raise SettingError(f"--workers {count}: only {len(ids)} GPU(s) to give them ({','.join(ids)})")
    return [",".join(ids[i:] + ids[:i]) for i in range(count)]


def _gpu_cluster(visible: list[str], env: dict):
    """A local cluster of one worker process (one thread) per entry of ``visible``, each with
    its own ``CUDA_VISIBLE_DEVICES`` (a plain LocalCluster gives every worker the same)."""
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1",
                                                        "env": dict(env, CUDA_VISIBLE_DEVICES=devices),
                                                        "dashboard": False, "dashboard_address": None,
                                                        "silence_logs": logging.ERROR}}
               for i, devices in enumerate(visible)}
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard": False,
                                                "dashboard_address": None}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR)


def close_client(client) -> None:
    cluster = getattr(client, "_dfi_owns_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def worker_cache() -> dict:
    """The calling worker's cache (kept for the worker's life, dropped if it dies); in a
    process that is no Dask worker, one cache for the process."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return _LOCAL_CACHE
    cache = getattr(worker, "_dfi_cache", None)
    if cache is None:
        import warnings

        from ..core.errors import show_warning
        from ..core.memory import keep_freed_memory

        cache = worker._dfi_cache = {}
        _limit_threads()
        keep_freed_memory()  # as the command line does
        warnings.showwarning = show_warning  # one line, as the single commands print them
    return cache


def _limit_threads() -> None:
    """Give a local cluster's worker its share of the cores for BLAS (Dask starts workers
    with one BLAS thread each, which would leave cores idle with fewer workers than cores)."""
    threads = os.environ.get("DFI_WORKER_THREADS")
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(threads))


def cached_vgg(weights: str, device: str, seed: int, data_dir: Optional[str], pooling: str = "max"):
    """The VGG-19 of these settings (``weights`` as ``load_vgg19`` takes it), loaded once
    per worker and kept for every row or block it runs; its device is made current in the
    calling thread each time (Dask runs tasks in executor threads of its own, and CuPy's
    current device is per thread)."""
    from pathlib import Path

    from ..core.backend import parse_device, use_device
    from ..nets.weights import load_vgg19

    cache = worker_cache()
    key = ("vgg19", weights, device, seed, data_dir, pooling)
    if key not in cache:
        cache[key] = load_vgg19(weights, data_dir=Path(data_dir) if data_dir else None, seed=seed,
                                pooling=pooling).to_device(use_device(parse_device(device)))
    use_device(cache[key].device)
    return cache[key]

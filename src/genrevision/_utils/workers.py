"""Worker process pools that stop cleanly: the machinery every local engine shares.

:func:`start_pool` makes a ``spawn`` :class:`~concurrent.futures.ProcessPoolExecutor`
whose workers do not re-import the caller's main script (so a script without an
``if __name__ == "__main__":`` guard works), ignore Ctrl-C (the parent stops them: one message, not a
traceback per worker), die with the parent even when it is killed
(``PR_SET_PDEATHSIG``), and run a fixed number of BLAS/OpenMP/torch threads so
that workers x threads fills the cores without oversubscribing them.
:func:`stop_pool` ends a pool at once after an interrupt or an error.
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from .validation import check_scalar

__all__ = ["start_pool", "stop_pool", "worker_init", "die_with_parent", "threads_per_worker"]


def threads_per_worker(workers: int) -> int:
    """Threads each of ``workers`` processes may use so that together they fill the cores once."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def start_pool(workers: int, *, threads: int = 1, initializer=None, initargs=()) -> ProcessPoolExecutor:
    """A spawn process pool of ``workers`` processes set up by :func:`worker_init`.

    Parameters
    ----------
    workers : int
        Processes (>= 1).
    threads : int
        BLAS/OpenMP/torch (and so ONNX Runtime) threads per worker.
    initializer, initargs : optional
        Run in each worker after :func:`worker_init` (e.g. load a model once).
    """
    check_scalar(workers, "workers", kind=int, min=1, whole_floats=True)
    # spawn: workers must not inherit the parent's torch/OpenMP thread state.
    return ProcessPoolExecutor(max_workers=int(workers), mp_context=_SpawnWithoutMain(),
                               initializer=worker_init, initargs=(os.getpid(), int(threads), initializer, initargs))


_SPAWN = type(get_context("spawn"))
_PREP_LOCK = threading.Lock()


class _ProcessWithoutMain(get_context("spawn").Process):
    """A spawn process that does not run the caller's ``__main__`` again.

    A spawn child re-imports the parent's main script (as ``__mp_main__``) before
    it runs anything: a script that calls ``genrevision.evaluate(...)`` at its top
    level, without an ``if __name__ == "__main__":`` guard, would start the
    evaluation again in every worker, which Python stops with "bootstrapping
    phase" errors (a ``BrokenProcessPool`` here); ``python -`` has no script to
    re-import at all. These workers run only genrevision's own functions, so
    the main module is left out of what the child prepares.
    """

    @staticmethod
    def _Popen(process_obj):
        from multiprocessing import spawn

        with _PREP_LOCK:
            full = spawn.get_preparation_data

            def without_main(name):
                data = full(name)
                data.pop("init_main_from_path", None)
                data.pop("init_main_from_name", None)
                return data

            spawn.get_preparation_data = without_main
            try:
                return _SPAWN.Process._Popen(process_obj)
            finally:
                spawn.get_preparation_data = full


class _SpawnWithoutMain(_SPAWN):
    Process = _ProcessWithoutMain


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel queued jobs and end the worker processes at once (SIGTERM, then SIGKILL)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    results = getattr(pool, "_result_queue", None)  # shutdown() drops it
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        try:
            proc.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    for proc in procs:
        try:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
        except (OSError, ValueError, AssertionError, AttributeError):
            pass
    _release_result_reader(results)


def _release_result_reader(results) -> None:
    # A worker killed in the middle of sending a large result (a track's images) leaves the
    # executor's manager thread blocked in recv() waiting for the rest of the message; as this
    # process still holds the pipe's write end, that read never ends, and interpreter exit (which
    # joins the manager thread) hangs for ever. The workers are dead: closing our write end turns
    # the wait into end-of-file, which the manager thread treats as a broken pool and exits.
    writer = getattr(results, "_writer", None)
    if writer is not None:
        try:
            writer.close()
        except (OSError, ValueError):
            pass


def die_with_parent(parent_pid: int) -> None:
    """End this worker when its parent process dies, even by SIGKILL (which
    runs no cleanup): Linux's PR_SET_PDEATHSIG, else a watchdog thread."""
    import signal

    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    if not armed:
        import threading
        import time

        def watch():
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="genrevision-parent-watchdog", daemon=True).start()


def worker_init(parent_pid: int | None = None, threads: int = 1, initializer=None, initargs=()) -> None:
    """Set up one worker process.

    ``threads`` BLAS/OpenMP/torch threads: the workers together already fill
    the cores, more threads inside each only fight each other. Ctrl-C reaches
    the whole process group: workers ignore it and let the parent stop them;
    and they die with the parent (see :func:`die_with_parent`).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    # Libraries loaded later (torch, by the initializer) read these when they start.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(int(threads))
    _limit_threads(int(threads))
    if initializer is not None:
        initializer(*initargs)
        _limit_threads(int(threads))  # what the initializer loaded (e.g. torch with a model)


def _limit_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except Exception:  # noqa: BLE001 - threadpoolctl is optional (scikit-learn brings it)
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)

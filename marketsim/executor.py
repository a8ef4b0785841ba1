"""Where parallel work runs, and how it stops: local worker processes or a Dask cluster, behind the
``concurrent.futures.Executor`` interface (one code path for the sweep and the projection).

- :func:`worker_count` caps the workers at the work available and at the cores this process may use, so
  ``--workers 1000`` for 2 tasks starts 2 processes (or 1: run inline).
- :func:`local_executor` is a ``ProcessPoolExecutor`` whose workers die with their parent (Linux:
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in each worker, so a SIGKILL or SIGTERM of the parent leaves no
  orphan), ignore Ctrl-C (the parent decides what happens; a terminal sends SIGINT to the whole process
  group), and are ended at once when the ``with`` block is left by an exception (Ctrl-C, an error):
  queued work is cancelled and the running workers are killed, instead of waiting for their tasks.
- :func:`dask_executor` connects to a Dask scheduler (``distributed.Client(address).get_executor()``).
- :func:`open_executor` picks one of them (or none: inline) for a number of tasks.
- :func:`deferred_interrupt` holds a Ctrl-C back during a short critical section (a commit).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterator

from .errors import UserError

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's limit), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_count(requested: int | None, tasks: int) -> int:
    """Worker processes to start for ``tasks`` independent tasks: ``requested`` (default: every core), but
    never more than the tasks or the cores. 1 means: run inline, start no process."""
    cores = available_cores()
    return max(1, min(requested or cores, cores, max(1, int(tasks))))


# --------------------------------------------------------------------------- local processes


def _init_worker(parent_pid: int, pids) -> None:
    """In each worker: die with the parent, leave Ctrl-C to the parent, report our pid to the parent."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    # the parent may have died before prctl took effect: then no signal will come
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        os._exit(1)
    except PermissionError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pids.put(os.getpid())


class LocalExecutor(ProcessPoolExecutor):
    """A ``ProcessPoolExecutor`` whose workers die with the parent and are killed, not awaited, when the
    ``with`` block ends in an exception (see the module docstring). ``stop()`` does the same by hand."""

    def __init__(self, workers: int):
        ctx = multiprocessing.get_context()
        self._marketsim_pid_queue = ctx.SimpleQueue()
        self._marketsim_pids: set[int] = set()
        super().__init__(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                         initargs=(os.getpid(), self._marketsim_pid_queue))
        # start the workers now (the fork start method forks them all at the first submit), while this process
        # may still have a single thread: forking while another thread (a progress bar) holds a lock is unsafe
        self.submit(os.getpid).result()

    def worker_pids(self) -> set[int]:
        """Process ids of the workers started so far (each reports its own when it starts)."""
        q = self._marketsim_pid_queue
        while not q.empty():
            self._marketsim_pids.add(q.get())
        return set(self._marketsim_pids)

    def stop(self) -> None:
        """Cancel the tasks not started and kill the workers now (their running tasks are lost)."""
        _quiet_cancelled_future_race()
        with deferred_interrupt(reraise=False):
            self.shutdown(wait=False, cancel_futures=True)
            for pid in self.worker_pids():
                if _is_our_child(pid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.shutdown(wait=True)
        else:
            self.stop()
        return False


def _quiet_cancelled_future_race() -> None:
    """Python < 3.12: when workers die, the pool's manager thread sets BrokenProcessPool on every pending
    future, and raises InvalidStateError on one already cancelled (fixed in 3.12, which ignores it), which
    prints a traceback from that thread. Nothing is lost (the future was cancelled); silence that one error."""
    if sys.version_info >= (3, 12) or getattr(threading.excepthook, "_marketsim", False):
        return
    from concurrent.futures import InvalidStateError

    previous = threading.excepthook

    def hook(args):
        if issubclass(args.exc_type, InvalidStateError) and type(args.thread).__name__ == "_ExecutorManagerThread":
            return
        previous(args)

    hook._marketsim = True
    threading.excepthook = hook


def _is_our_child(pid: int) -> bool:
    """True unless /proc says ``pid`` is no longer a child of this process (it was reaped and reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: trust the pid (it cannot be reused before its parent reaps it)
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) == os.getpid() or multiprocessing.get_start_method() != "fork"


def local_executor(workers: int) -> LocalExecutor:
    """A process pool of ``workers`` processes that die with this one, started before this returns (create it
    before starting threads such as a progress bar). Use it as a context manager: a normal exit waits for
    the tasks; an exception (Ctrl-C) cancels queued tasks and kills the workers at once."""
    return LocalExecutor(workers)


# --------------------------------------------------------------------------- Dask


@contextlib.contextmanager
def dask_executor(address: str, *, timeout: str = "10s") -> Iterator[tuple[Executor, int, str]]:
    """``(executor, threads, description)`` for the Dask scheduler at ``address``; the client is closed on exit
    (which releases its tasks on the cluster). Needs the 'distributed' extra. Errors are one line."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs the 'distributed' extra: pip install -e '.[distributed]'") from None
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as e:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
        ws = info.get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in ws.values()) or 1
        yield client.get_executor(), threads, f"Dask cluster {address} ({len(ws)} workers, {threads} threads)"
    finally:
        client.close()


def _takes_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- choosing


@dataclass(frozen=True)
class Pool:
    executor: Executor | None  # None: run inline in this process
    slots: int  # tasks that run at once
    where: str  # for messages: "2 local workers", "Dask cluster tcp://... (2 workers, 2 threads)"


@contextlib.contextmanager
def open_executor(tasks: int, *, workers: int | None = None, scheduler: str | None = None) -> Iterator[Pool]:
    """The executor for ``tasks`` tasks: the Dask cluster at ``scheduler``, or ``worker_count(workers, tasks)``
    local processes (none if that is 1: the tasks run inline)."""
    if scheduler:
        with dask_executor(scheduler) as (ex, threads, where):
            yield Pool(ex, threads, where)
        return
    n = worker_count(workers, tasks)
    if n <= 1:
        yield Pool(None, 1, "1 local worker")
        return
    with local_executor(n) as ex:
        yield Pool(ex, n, f"{n} local workers")


# --------------------------------------------------------------------------- Ctrl-C


@contextlib.contextmanager
def deferred_interrupt(reraise: bool = True) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while the block runs (a commit that must not be torn), then raise it
    (``reraise``) or drop it (``reraise=False``: we are stopping anyway). Only the main thread can install
    signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got and reraise and callable(old):
            old(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt

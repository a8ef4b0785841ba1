"""Where parallel work runs, and how it stops: local worker processes or a Dask cluster, behind the
``concurrent.futures.Executor`` interface (one code path for the sweep and the projection).

- :func:`worker_count` caps the workers at the work available and at the cores this process may use, so
  ``--workers 1000`` for 2 tasks starts 2 processes (or 1: run inline).
- :func:`local_executor` is a ``ProcessPoolExecutor`` whose workers die with their parent (Linux:
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in each worker, so a SIGKILL or SIGTERM of the parent leaves no
  orphan), ignore Ctrl-C (the parent decides what happens; a terminal sends SIGINT to the whole process
  group), and are ended at once when the ``with`` block is left by an exception (Ctrl-C, an error):
  queued work is cancelled and the running workers are killed, instead of waiting for their tasks.
- :func:`dask_executor` connects to a Dask scheduler (``distributed.Client(address).get_executor()``), after
  checking the address (:func:`check_scheduler_address`), and waits at most :data:`NO_WORKER_SECONDS` for a
  worker; mid-run, if the scheduler has had no worker for that long while tasks are pending, they fail.
- Lost workers are one :class:`WorkerLost` (a :class:`~marketsim.errors.UserError`), raised by the futures
  of either executor, whatever the caller: a local worker process that died (e.g. SIGKILL from the
  out-of-memory killer; Python's ``BrokenProcessPool``), a task whose Dask workers kept dying
  (``KilledWorker``), a cluster left without workers. It says what happened and what to try.
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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import cast

from marketsim.errors import UserError

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

NO_WORKER_SECONDS = 60.0
"""Seconds a Dask scheduler may have no worker before the command stops with one line (exit 2): at the start
(after "waiting for a Dask worker at ADDRESS"), and while tasks are pending (all workers died or left; a
worker that a nanny restarts, or a new one, within this time lets the work go on)."""

_POLL_SECONDS = 1.0  # how often the Dask watchdog asks the scheduler for its workers


class WorkerLost(UserError):
    """The processes running the tasks died (killed, e.g. by the out-of-memory killer) or left. ``what``: what
    happened; ``advice``: what to try; ``str()`` is both, one line. A sweep adds what it kept and how to
    resume."""

    def __init__(self, what: str, advice: str):
        self.what, self.advice = what, advice
        super().__init__(f"{what}; {advice}")


def _relay(inner: Future, translate: Callable[[BaseException], BaseException]) -> Future:
    """A future that follows ``inner`` (its result, or its exception passed through ``translate``) and that can
    also be failed by itself (:meth:`Future.set_exception`, e.g. by a watchdog); cancelling it cancels
    ``inner``."""
    outer: Future = Future()

    def settle(f: Future) -> None:
        if f.cancelled():
            outer.cancel()
            return
        exc = f.exception()
        with contextlib.suppress(InvalidStateError):  # already cancelled or failed by a watchdog
            if exc is None:
                outer.set_result(f.result())
            else:
                outer.set_exception(translate(exc))

    def on_outer_done(f: Future) -> None:
        if f.cancelled() or f.exception() is not None:
            inner.cancel()

    inner.add_done_callback(settle)
    outer.add_done_callback(on_outer_done)
    return outer


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
        ctx = _RecordingContext(multiprocessing.get_context())
        self._marketsim_processes = ctx.processes
        self._marketsim_pid_queue = ctx.SimpleQueue()
        self._marketsim_pids: set[int] = set()
        self._marketsim_lost: WorkerLost | None = None
        # the wrapper stands in for the context it wraps (it forwards every other attribute): cast for the checker
        super().__init__(
            max_workers=workers,
            mp_context=cast(BaseContext, ctx),
            initializer=_init_worker,
            initargs=(os.getpid(), self._marketsim_pid_queue),
        )
        # start the workers now (the fork start method forks them all at the first submit), while this process
        # may still have a single thread: forking while another thread (a progress bar) holds a lock is unsafe
        self.submit(os.getpid).result()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """As ``ProcessPoolExecutor.submit``, but a worker that dies (its task and all pending ones fail with
        ``BrokenProcessPool``) fails them with a :class:`WorkerLost` saying how it died."""
        try:
            inner = super().submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            raise self._lost() from None
        return _relay(inner, lambda e: self._lost() if isinstance(e, BrokenProcessPool) else e)

    def _lost(self) -> WorkerLost:
        """What happened to the pool's workers, from the exit status of the one(s) that died (found once: a
        broken pool stays broken)."""
        if self._marketsim_lost is None:
            self._marketsim_lost = self._find_lost()
        return self._marketsim_lost

    def _find_lost(self) -> WorkerLost:
        deadline = time.monotonic() + 1.0
        codes: list[int] = []
        while True:  # the pool noticed the death from the process's sentinel: its status is there, or nearly
            codes = [c for c in map(_exitcode, self._marketsim_processes) if c not in (None, 0)]
            if codes or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        # once broken, the pool sends the other workers SIGTERM: report the first cause, not those
        first = [c for c in codes if c != -signal.SIGTERM] or codes
        advice = "try fewer --workers or fewer consumers"
        if not first:
            return WorkerLost("a local worker process died while running a task", advice)
        code = first[0]
        if code < 0:
            name = _signal_name(-code)
            why = "; on Linux usually the out-of-memory killer" if -code == signal.SIGKILL else ""
            return WorkerLost(
                f"a local worker process was killed by signal {-code} ({name}{why}) while running a task", advice
            )
        return WorkerLost(f"a local worker process exited with code {code} while running a task", advice)

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


class _RecordingContext:
    """A multiprocessing context that keeps the ``Process`` objects it makes (``processes``), so that the pool's
    owner can read a dead worker's ``exitcode`` (e.g. -9: SIGKILL); otherwise the context it wraps."""

    def __init__(self, ctx):
        self._ctx = ctx
        self.processes: list = []

    def Process(self, *args, **kwargs):  # (named as multiprocessing names it)
        p = self._ctx.Process(*args, **kwargs)
        self.processes.append(p)
        return p

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def _exitcode(p) -> int | None:
    """``p.exitcode`` (negative: the signal that killed it), or None if unknown (still running, or closed)."""
    try:
        return p.exitcode
    except ValueError:  # the Process object was closed
        return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _quiet_cancelled_future_race() -> None:
    """Python < 3.12: when workers die, the pool's manager thread sets BrokenProcessPool on every pending
    future, and raises InvalidStateError on one already cancelled (fixed in 3.12, which ignores it), which
    prints a traceback from that thread. Nothing is lost (the future was cancelled); silence that one error."""
    fixed = sys.version_info >= (3, 12)  # a value, not a branch: the type checker reads both interpreters alike
    if fixed or getattr(threading.excepthook, "_marketsim", False):
        return
    from concurrent.futures import InvalidStateError

    previous = threading.excepthook

    def hook(args):
        if issubclass(args.exc_type, InvalidStateError) and type(args.thread).__name__ == "_ExecutorManagerThread":
            return
        previous(args)

    setattr(hook, "_marketsim", True)  # marks the hook as this one: installed once  # noqa: B010
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
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) == os.getpid() or multiprocessing.get_start_method() != "fork"


def local_executor(workers: int) -> LocalExecutor:
    """A process pool of ``workers`` processes that die with this one, started before this returns (create it
    before starting threads such as a progress bar). Use it as a context manager: a normal exit waits for
    the tasks; an exception (Ctrl-C) cancels queued tasks and kills the workers at once."""
    return LocalExecutor(workers)


# --------------------------------------------------------------------------- Dask


SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
"""--scheduler address schemes: tcp:// (also the default for HOST:PORT) and ws:// work with 'distributed' alone;
tls:// and wss:// need a TLS configuration in the Dask config; ucx:// needs the distributed-ucxx package."""


def check_scheduler_address(address: str) -> str:
    """The Dask scheduler ``address`` as ``scheme://host:port``, checked before connecting (HOST:PORT means
    tcp://HOST:PORT); a :class:`UserError` (one line: what is wrong, what would be right) if it cannot work."""
    right = "give the address the scheduler prints, e.g. tcp://192.168.1.10:8786"
    a = address.strip()
    scheme, sep, loc = a.partition("://")
    if not sep:
        scheme, loc = "tcp", a
    scheme = scheme.lower()
    if scheme == "inproc":
        raise UserError(
            f"--scheduler {address}: an inproc:// scheduler is reachable only inside the process that "
            f"started it; {right}"
        )
    if scheme not in SCHEMES:
        raise UserError(
            f"--scheduler {address}: unknown scheme {scheme + '://'!r} (supported: "
            f"{', '.join(s + '://' for s in SCHEMES)}); {right}"
        )
    from distributed.comm.addressing import parse_host_port

    try:
        host, port = parse_host_port(loc)
    except (ValueError, TypeError) as e:
        raise UserError(f"--scheduler {address}: not HOST:PORT ({e}); {right}") from None
    if not host:
        raise UserError(f"--scheduler {address}: no host; {right}")
    if not 0 < int(port) < 65536:
        raise UserError(f"--scheduler {address}: port {port} is not in 1-65535; {right}")
    if scheme == "ucx":
        import importlib.util

        if not any(importlib.util.find_spec(m) for m in ("distributed_ucxx", "ucp")):
            raise UserError(
                f"--scheduler {address}: ucx:// needs UCX support, which is not installed "
                f"(pip install distributed-ucxx-cu12, or ucx-py for an older Dask); or use the "
                f"scheduler's tcp:// address"
            )
    if scheme in ("tls", "wss"):
        _check_tls(address, scheme)
    return f"{scheme}://{loc}"


def _check_tls(address: str, scheme: str) -> None:
    """tls:// and wss:// need a client certificate set-up in the Dask config (or a security loader)."""
    import dask

    if dask.config.get("distributed.client.security-loader", None):
        return  # the loader provides it when the client connects
    from distributed.security import Security

    try:
        ctx = Security().get_connection_args("client")["ssl_context"]
    except (OSError, ValueError) as e:
        raise UserError(
            f"--scheduler {address}: the Dask TLS configuration does not load ({e}); fix the files "
            f"named in distributed.comm.tls (ca-file, client.cert, client.key)"
        ) from None
    if ctx is None:
        raise UserError(
            f"--scheduler {address}: {scheme}:// needs a TLS configuration, and the Dask config has "
            f"none; set distributed.comm.tls.ca-file, .client.cert and .client.key (e.g. "
            f"DASK_DISTRIBUTED__COMM__TLS__CA_FILE=ca.pem, ...), or use the scheduler's tcp:// address"
        )


def _default_note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _worker_threads(client) -> int | None:
    """Threads of the scheduler's workers now (0: no worker), or None if the scheduler does not answer."""
    try:
        return sum(client.nthreads().values())
    except Exception:  # closed comm, timeout, ...: the scheduler is not answering
        return None


class DaskExecutor(Executor):
    """``Client.get_executor()`` with a watchdog: while tasks are pending, if the scheduler has no worker (all
    died or left) or does not answer for :data:`NO_WORKER_SECONDS`, the pending futures fail with a
    :class:`WorkerLost`; a task whose workers kept dying (Dask's ``KilledWorker``) fails with one too."""

    def __init__(self, client, address: str, on_note: Callable[[str], None]):
        self._client, self._address, self._note = client, address, on_note
        self._inner = client.get_executor()
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._watchdog: threading.Thread | None = None

    def submit(self, fn, /, *args, **kwargs) -> Future:
        outer = _relay(self._inner.submit(fn, *args, **kwargs), self._translate)
        with self._lock:
            self._pending.add(outer)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="marketsim-dask-watchdog", daemon=True)
                self._watchdog.start()
        outer.add_done_callback(self._forget)
        return outer

    def _forget(self, f: Future) -> None:
        with self._lock:
            self._pending.discard(f)

    def _translate(self, e: BaseException) -> BaseException:
        if type(e).__name__ == "KilledWorker":  # distributed.scheduler.KilledWorker (its message is many lines)
            tries = getattr(e, "allowed_failures", None)
            tries = f"{tries + 1} workers" if isinstance(tries, int) else "every worker"
            return WorkerLost(
                f"a task's Dask workers at {self._address} died while running it ({tries} in turn, "
                f"Dask's KilledWorker), e.g. killed for using too much memory",
                "give the workers more memory or try fewer consumers, then run the command again",
            )
        return e

    def _watch(self) -> None:
        """Fail the pending futures once the cluster has had no worker for NO_WORKER_SECONDS."""
        since: float | None = None
        while not self._closed.wait(_POLL_SECONDS):
            with self._lock:
                pending = [f for f in self._pending if not f.done()]
            if not pending:
                since = None
                continue
            threads = _worker_threads(self._client)
            if threads:
                since = None
                continue
            now = time.monotonic()
            if since is None:
                since, said = now, False
            elif not said and now - since >= min(5.0, NO_WORKER_SECONDS / 2):  # not a nanny's quick restart
                said = True
                self._note(
                    f"no Dask worker at {self._address} ("
                    f"{'the scheduler does not answer' if threads is None else 'all gone'}); waiting up to "
                    f"{NO_WORKER_SECONDS:g} s for one ..."
                )
            if now - since >= NO_WORKER_SECONDS:
                what = (
                    f"the Dask scheduler at {self._address} has not answered for {NO_WORKER_SECONDS:g} s"
                    if threads is None
                    else f"the Dask scheduler at {self._address} has had no worker for {NO_WORKER_SECONDS:g} s "
                    f"(its workers died, e.g. killed for using too much memory, or were stopped)"
                )
                lost = WorkerLost(
                    what,
                    f"start workers for it (dask worker {self._address}), with more memory if "
                    f"they were killed, then run the command again",
                )
                for f in pending:
                    with contextlib.suppress(InvalidStateError):
                        f.set_exception(lost)
                since = None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the watchdog; ``cancel_futures`` cancels the pending tasks (closing the client releases them)."""
        self._closed.set()
        if cancel_futures:
            with self._lock:
                pending = list(self._pending)
            for f in pending:
                f.cancel()


@contextlib.contextmanager
def dask_executor(
    address: str, *, timeout: str = "10s", on_note: Callable[[str], None] | None = None
) -> Iterator[tuple[Executor, int, str]]:
    """``(executor, threads, description)`` for the Dask scheduler at ``address`` (checked first:
    :func:`check_scheduler_address`), once it has a worker (waiting at most :data:`NO_WORKER_SECONDS`, saying
    so through ``on_note``, default: a line on stderr); the client is closed on exit (which releases its tasks
    on the cluster). Needs the 'distributed' extra. Errors are one line (:class:`UserError`)."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs the 'distributed' extra: pip install -e '.[distributed]'") from None
    note = on_note or _default_note
    address = check_scheduler_address(address)
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise UserError(
            f"cannot reach the Dask scheduler at {address}: {e}; is it running (dask scheduler)? check "
            f"the address and port"
        ) from None
    ex = None
    try:
        threads = _worker_threads(client)
        if not threads:
            note(f"waiting for a Dask worker at {address} (up to {NO_WORKER_SECONDS:g} s) ...")
            deadline = time.monotonic() + NO_WORKER_SECONDS
            while not threads and time.monotonic() < deadline:
                time.sleep(min(0.2, _POLL_SECONDS))
                threads = _worker_threads(client)
            if not threads:
                raise UserError(
                    f"no Dask worker joined the scheduler at {address} within {NO_WORKER_SECONDS:g} s; "
                    f"start some (dask worker {address}) and run the command again"
                )
        info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
        ws = info.get("workers", {})
        threads = sum(int(w.get("nthreads", 1)) for w in ws.values()) or threads
        ex = DaskExecutor(client, address, note)
        yield ex, threads, f"Dask cluster {address} ({len(ws)} workers, {threads} threads)"
    finally:
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)
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
def open_executor(
    tasks: int,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Iterator[Pool]:
    """The executor for ``tasks`` tasks: the Dask cluster at ``scheduler``, or ``worker_count(workers, tasks)``
    local processes (none if that is 1: the tasks run inline). ``on_note`` hears notices (waiting for a Dask
    worker); default: a line on stderr. Lost workers fail the tasks with :class:`WorkerLost`."""
    if scheduler:
        with dask_executor(scheduler, on_note=on_note) as (ex, threads, where):
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

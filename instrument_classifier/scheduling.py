"""Where a stage's Dask tasks run: this machine's cores, or a running Dask cluster.

One task graph for every size; only the client changes::

    with dask_client(None, workers=2) as client:                  # this machine: 2 worker processes
    with dask_client("tcp://host:8786") as client:                # a cluster (`dask scheduler`, `dask worker`)
        run_tasks(client, render_shard, [(settings, ids, out), ...], on_result=...)

This machine (the default): a ``LocalCluster`` of ``workers`` processes of one
thread each, forked from this process (so a worker starts in a fraction of a
second with every module already imported, where a spawned one takes ~2 s),
no dashboard, its logs silenced; with one worker, a worker thread in this
process (nothing to start).  A cluster: connected within
:data:`CONNECT_SECONDS` or a one-line error, its dashboard address printed.
Either way a task's exception reaches the caller as itself (a ``UserError``,
an ``OSError``), a worker lost mid-task is replaced by a retry of its tasks
(the scheduler's ``allowed-failures``, 3), and a run whose workers all went
away ends with a one-line error instead of waiting for ever.

Tasks must be idempotent: a task may run twice (its worker died during or
after it), and the retry must give the same result.

Same seed, same bytes holds across machines only with the same software:
every worker of a cluster must run this project's code and the libraries
that shape the bytes (:data:`BYTE_PACKAGES`) at this machine's versions
(:func:`software_stack`).  A worker that differs is refused, in one line
naming what differs, when the run starts or when it joins later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import logging
import platform
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .cli import UserError, library_versions
from .defaults import INSTRUMENTS_CSV, SOUNDFONTS_CSV

# How long a cluster's scheduler may take to answer before the run gives up.
CONNECT_SECONDS = 5
# How long a run waits for a cluster to have a worker (at the start, or after losing them all).
NO_WORKER_SECONDS = 30
# How often a run that is waiting for its tasks checks the cluster still has workers.
POLL_SECONDS = 2.0


# Dask settings for this process and the worker processes it forks.  Dask's defaults keep a small
# cluster's scheduler, nannies and workers busy with monitoring, ~10 % of a core while the workers
# render; these keep it under 2 %.
LOCAL_CONFIG = {
    "distributed.worker.multiprocessing-method": "fork",
    # The statistical profiler samples each worker's stack every 10 ms (the dashboard's profile page).
    "distributed.worker.profile.enabled": False,
    # The event-loop lag check runs every 20 ms in every server; a task that holds the GIL for
    # seconds is normal here, not worth its warning.
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.tick.limit": "1h",
    # Worker memory against its limit: every second, not every 100 ms (a shard holds little memory).
    "distributed.worker.memory.monitor-interval": "1s",
    # CPU, memory, network and disk counters for the dashboard.
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
}

# Dask's log level during a run: above every message it logs, CRITICAL too (our own errors say what failed).
LOGS_OFF = logging.CRITICAL + 1


# The Python distributions whose version can change a clip's or a chromagram's bytes.
BYTE_PACKAGES = ("numpy", "scipy", "pandas", "soundfile", "pyfluidsynth", "pedalboard", "pyroomacoustics", "mido")


@functools.cache
def software_stack() -> dict[str, str]:
    """What must match across machines for the same bytes: Python, :data:`BYTE_PACKAGES`, C libraries, our code.

    ``project`` is a digest of this package's source and of the catalogues
    it reads (instruments.csv, soundfonts.csv), as this process imported
    them.  Computed once a process (~60 ms).
    """
    stack = {"machine": platform.machine(), **library_versions(*BYTE_PACKAGES)}
    import soundfile

    from .synthesis import fluidsynth_version

    stack["libsndfile"] = soundfile.__libsndfile_version__
    stack["libfluidsynth"] = fluidsynth_version()
    digest = hashlib.sha256()
    package_dir = Path(__file__).resolve().parent
    for path in sorted(package_dir.rglob("*"), key=lambda p: p.relative_to(package_dir).as_posix()):
        if path.is_file() and path.suffix in {".py", ".html", ".css", ".js"}:
            digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes())
    for path in (INSTRUMENTS_CSV, SOUNDFONTS_CSV):
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"missing"))
    stack["project"] = digest.hexdigest()[:12]
    return stack


def stack_differences(theirs: dict[str, str]) -> list[str]:
    """What differs between a worker's :func:`software_stack` and ours: ``"numpy 2.1.0 (here 2.4.6)"``, ..."""
    return [f"{name} {theirs.get(name, 'missing')} (here {value})" for name, value in software_stack().items()
            if theirs.get(name) != value]


def _stack_error(address: str, theirs: dict[str, str]) -> UserError:
    return UserError(f"Dask worker {address} runs other software than this machine: "
                     f"{', '.join(stack_differences(theirs))}; the same seed gives the same bytes only with "
                     "the same code and versions (install the same checkout with -c constraints.txt everywhere)")


def check_worker_software(client: Any) -> None:
    """Refuse a cluster whose workers differ from this machine in :func:`software_stack` (a one-line UserError)."""
    ours = software_stack()
    for address, theirs in sorted(client.run(software_stack).items()):
        if theirs != ours:
            raise _stack_error(address, theirs)


def check_jobs(jobs: int | None, scheduler: str | None) -> None:
    """A UserError for ``--jobs`` below 1, or given with ``--scheduler`` (a cluster has the workers it has)."""
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if jobs is not None and scheduler is not None:
        raise UserError("--jobs counts this machine's workers; a Dask cluster (--scheduler) has the workers "
                        "it has: leave --jobs out")


@dataclass(frozen=True)
class WorkerRecord:
    """Who ran a task: the worker's address and its machine's host name."""

    address: str
    host: str


def dask_setup(worker: Any) -> None:
    """Dask preload hook for this machine's worker processes: interrupts are the parent's business.

    A forked worker inherits the parent's SIGTERM handler (which raises) and
    gets a terminal's Ctrl-C too; either would print a traceback per worker.
    The parent stops the workers itself when it is interrupted.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, workers: int = 1, threads: int = 1, announce: bool = True,
                warm_up: Callable[[], None] | None = None) -> Iterator[Any]:
    """Yield a ``distributed.Client``: a local cluster of ``workers``, or the cluster at ``scheduler``.

    A local cluster's workers run ``threads`` tasks each; one worker is a
    worker in this process (its tasks in threads: for work that releases
    Python's lock, such as the FFTs of the features, with nothing to copy
    between processes).

    ``announce`` prints the cluster's workers and dashboard address (a
    remote cluster only).  ``warm_up`` (a local cluster only) runs in a
    thread while Dask is imported, and ends before the worker processes are
    forked, so they inherit what it loaded (work in C that releases Python's
    lock, such as loading a SoundFont, costs no time then).  On leaving, the
    client is closed and a local cluster stopped, its worker processes gone,
    before the caller cleans up.
    """
    warming = None
    if warm_up is not None and scheduler is None:
        warming = threading.Thread(target=warm_up, name="warm-up", daemon=True)
        warming.start()
    import dask
    import distributed

    # Off, CRITICAL too: Ctrl-C amid many queued tasks made the scheduler log "Closed comm ... while trying to
    # write cancelled-keys" at CRITICAL before the one line that says the run was interrupted.
    quiet_logs = {"distributed": LOGS_OFF}
    with dask.config.set(LOCAL_CONFIG), log_levels(quiet_logs):
        if scheduler is None:
            if warming is not None:
                warming.join()  # never fork while it runs
            cluster = _local_cluster(workers, threads)
            client = distributed.Client(cluster, set_as_default=False)
        else:
            cluster = None
            client = _connect(scheduler)
        try:
            if cluster is None:
                _wait_for_workers(client, scheduler)
                check_scheduler_imports(client, scheduler)
                check_worker_software(client)
                if announce:
                    print(describe_cluster(client), file=sys.stderr)
            yield client
        finally:
            # A failure to close (a scheduler gone) must not hide the run's own error; local workers
            # that outlive this process exit when it does (they watch their parent).
            with contextlib.suppress(Exception):
                client.close()
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()


def _local_cluster(workers: int, threads: int = 1) -> Any:
    import distributed
    import distributed.versions

    processes = workers > 1
    # Every worker reports its package versions when it joins; read once here (a scan of the installed
    # packages' metadata, cached), the forked workers inherit them: the cluster starts in half the time.
    distributed.versions.get_versions()
    software_stack()  # the same for them: inherited, not computed again in each
    try:
        return distributed.LocalCluster(
            n_workers=workers, threads_per_worker=threads, processes=processes,
            dashboard_address=None, silence_logs=LOGS_OFF, worker_dashboard_address=None,
            # No dashboard; the scheduler's HTTP server (health, metrics) on a free loopback port,
            # not 8787, which may be taken (a warning) or reachable from the network.
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            **({"host": "127.0.0.1", "preload": [__name__]} if processes else {}))
    except (OSError, RuntimeError, TimeoutError, ValueError) as error:  # ports, processes, threads, memory limits
        raise UserError(f"cannot start {_plural(workers, 'Dask worker')} on this machine: "
                        f"{_reason(error)}") from None


def _connect(scheduler: str) -> Any:
    import distributed

    _check_scheduler(scheduler)
    try:
        return distributed.Client(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except Exception as error:  # it answered the handshake a moment ago: it went away since
        raise UserError(f"cannot connect to the Dask scheduler at {scheduler}: {_reason(error)}") from None


def _check_scheduler(scheduler: str) -> None:
    """A Dask handshake with ``scheduler`` within CONNECT_SECONDS, or a UserError.

    Done on its own before a ``Client`` is made: a ``Client`` that failed to
    connect prints a traceback when it is garbage-collected.
    """
    from distributed.comm import connect

    async def handshake() -> None:
        comm = await connect(scheduler, timeout=CONNECT_SECONDS)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(handshake(), CONNECT_SECONDS + 1))
    except ValueError as error:  # an address Dask cannot parse
        raise UserError(f"invalid Dask scheduler address {scheduler!r}: {error}") from None
    except (OSError, asyncio.TimeoutError) as error:  # refused, unreachable, silent
        raise UserError(f"cannot reach the Dask scheduler at {scheduler} within {CONNECT_SECONDS} s "
                        f"(is `dask scheduler` running there?): {_reason(error)}") from None
    except Exception:  # garbage in the handshake
        raise UserError(f"something answered at {scheduler}, but not a Dask scheduler") from None


def _reason(error: BaseException) -> str:
    text = str(error).split("\n")[0]
    return text if text else type(error).__name__


def _wait_for_workers(client: Any, scheduler: str) -> None:
    try:
        client.wait_for_workers(1, timeout=NO_WORKER_SECONDS)
    except (TimeoutError, OSError):
        raise UserError(f"the Dask cluster at {scheduler} has no workers (waited {NO_WORKER_SECONDS} s; "
                        "start some with `dask worker`)") from None


# By value (a lambda, not a name the scheduler would have to import): whether the scheduler can import a module.
_importable = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731


def check_scheduler_imports(client: Any, scheduler: str) -> None:
    """Refuse a scheduler that cannot import this project: it unpickles every task it is sent (its
    ``update_graph``), so a scheduler started without the project on its path failed each task with a
    traceback about deserialising the graph."""
    package = __name__.split(".")[0]
    if not client.run_on_scheduler(_importable, package):
        raise UserError(f"the Dask scheduler at {scheduler} cannot import {package}: start it as the workers, "
                        f"in the project's folder with PYTHONPATH=$PWD (README, Running on a cluster)")


def describe_cluster(client: Any) -> str:
    """One line: the scheduler, its workers and threads, the dashboard address."""
    threads = client.nthreads()
    hosts = {address.split("://")[-1].rsplit(":", 1)[0] for address in threads}
    try:
        dashboard = client.dashboard_link or "none"
    except KeyError:  # the scheduler serves no dashboard (bokeh is not installed there)
        dashboard = "none (install bokeh where the scheduler runs)"
    return (f"dask: scheduler {client.scheduler.address}, {_plural(len(threads), 'worker')} on "
            f"{_plural(len(hosts), 'host')}, {_plural(sum(threads.values()), 'thread')}; dashboard {dashboard}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def run_tasks(client: Any, function: Callable, arguments: Iterable[tuple],
              on_result: Callable[[WorkerRecord, Any], None]) -> None:
    """Run ``function(*args)`` for each tuple of ``arguments`` as Dask tasks; ``on_result`` as each finishes.

    ``on_result(worker, result)`` runs in this thread, in the order the
    tasks finish.  The first task that raises stops the run: the others are
    cancelled and its exception is raised here (a task whose workers died
    four times, Dask's ``allowed-failures`` retries and one: a
    ``UserError``).  An exception here (Ctrl-C) cancels them too, and so does a result from a worker whose
    :func:`software_stack` differs from this machine's (one that joined
    after the start).
    """
    import distributed

    finished: queue.SimpleQueue = queue.SimpleQueue()
    futures = []
    try:
        for args in arguments:
            future = client.submit(_named, function, *args, pure=False)
            future.add_done_callback(finished.put)
            futures.append(future)
        no_workers_since = None
        for _ in range(len(futures)):
            while True:
                try:
                    future = finished.get(timeout=POLL_SECONDS)
                    break
                except queue.Empty:
                    try:
                        no_workers_since = _check_workers(client, no_workers_since)
                    except OSError as error:
                        raise UserError(f"lost the Dask scheduler: {_reason(error)}") from None
            try:
                worker, stack, result = future.result()
            except distributed.client.FutureCancelledError as error:
                raise UserError(f"the Dask scheduler cancelled a task (did it stop?): {error.reason}") from None
            except distributed.scheduler.KilledWorker as error:
                raise UserError(f"{error.allowed_failures + 1} workers died running the same task "
                                "(out of memory? killed?)") from None
            future.release()
            if stack != software_stack():
                raise _stack_error(worker.address, stack)
            on_result(worker, result)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:
            with contextlib.suppress(Exception):  # the scheduler may be gone
                client.cancel(pending)


def _named(function: Callable, *args: Any) -> tuple[WorkerRecord, dict[str, str], Any]:
    """Run on a worker: the worker's name and :func:`software_stack` beside the task's result."""
    import distributed

    result = function(*args)
    return WorkerRecord(distributed.get_worker().address, socket.gethostname()), software_stack(), result


def _check_workers(client: Any, since: float | None) -> float | None:
    """Raise once the cluster has been without workers for NO_WORKER_SECONDS; return since when it has none."""
    if client.nthreads():
        return None
    now = time.monotonic()
    if since is not None and now - since > NO_WORKER_SECONDS:
        raise UserError(f"the Dask cluster lost all its workers (none for {NO_WORKER_SECONDS} s)")
    return now if since is None else since


@contextlib.contextmanager
def log_levels(levels: dict[str, int]) -> Iterator[None]:
    """Set the named loggers' levels for the block (``{"distributed": logging.CRITICAL}``), then restore them."""
    loggers = {name: logging.getLogger(name) for name in levels}
    previous = {name: logger.level for name, logger in loggers.items()}
    for name, logger in loggers.items():
        logger.setLevel(levels[name])
    try:
        yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(previous[name])


def worker_records(records: Iterable[WorkerRecord]) -> list[dict]:
    """The run record's list of workers: address, host, tasks run, sorted by address."""
    counts: dict[WorkerRecord, int] = {}
    for record in records:
        counts[record] = counts.get(record, 0) + 1
    return [{"address": r.address, "host": r.host, "tasks": n} for r, n in sorted(counts.items(),
                                                                                key=lambda item: item[0].address)]

"""A real Dask cluster on this machine, for tests and benchmarks: ``dask scheduler`` and ``dask worker`` processes.

    with loopback_cluster(2) as cluster:            # TCP on 127.0.0.1
        generate_audio_samples.main([..., "--scheduler", cluster.address])
        cluster.add_worker(project_dir=other_checkout)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .defaults import REPO_DIR
from .scheduling import CONNECT_SECONDS, log_levels


@dataclass
class LoopbackCluster:
    """A running :func:`loopback_cluster`: the scheduler's address and the worker processes."""

    address: str
    workers: list[subprocess.Popen]
    folder: Path

    def add_worker(self, project_dir: Path = REPO_DIR) -> subprocess.Popen:
        """Start one more ``dask worker`` process (importing the project from ``project_dir``); wait for it."""
        self.workers.append(_start_worker(self.address, self.folder, len(self.workers), project_dir))
        _wait_for_worker_count(self.address, sum(w.poll() is None for w in self.workers))
        return self.workers[-1]


@contextlib.contextmanager
def loopback_cluster(workers: int = 2, *, dashboard: bool = False, scheduler_imports_project: bool = True
                     ) -> Iterator[LoopbackCluster]:
    """A real Dask cluster on this machine, for tests and benchmarks.

    ``dask scheduler`` and ``workers`` separate ``dask worker`` processes
    (one thread each, no nanny: a killed worker stays dead), talking TCP on
    127.0.0.1, each with this project on its ``PYTHONPATH`` as the README's
    recipe has it (``scheduler_imports_project=False``: all but the scheduler,
    the mistake a user may make).  Their logs go to files in a temporary folder; on leaving,
    every process is stopped.
    """
    with tempfile.TemporaryDirectory(prefix="dask-loopback-") as name:
        folder = Path(name)
        scheduler_file = folder / "scheduler.json"
        command = [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                   "--scheduler-file", str(scheduler_file), "--dashboard-address", "127.0.0.1:0",
                   *([] if dashboard else ["--no-dashboard"])]
        processes = [_start(command, folder / "scheduler.log", REPO_DIR if scheduler_imports_project else None)]
        cluster = None
        try:
            address = _wait_for_address(scheduler_file, processes[0], folder / "scheduler.log")
            cluster = LoopbackCluster(address, [], folder)
            for index in range(workers):
                cluster.workers.append(_start_worker(address, folder, index))
            _wait_for_worker_count(address, workers)
            yield cluster
        finally:
            for process in (cluster.workers if cluster else []) + processes:
                if process.poll() is None:
                    process.terminate()
            for process in (cluster.workers if cluster else []) + processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _project_env(project_dir: Path | None) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    if project_dir is None:  # without this project (run from its temporary folder, not the project's)
        kept = [p for p in (path or "").split(os.pathsep) if p and Path(p).resolve() != REPO_DIR.resolve()]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(kept)}
    return {**os.environ, "PYTHONPATH": str(project_dir) + (os.pathsep + path if path else "")}


def _start(command: list[str], log: Path, project_dir: Path | None = REPO_DIR) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                env=_project_env(project_dir), cwd=log.parent)


def _start_worker(address: str, folder: Path, index: int, project_dir: Path = REPO_DIR) -> subprocess.Popen:
    return _start([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--no-nanny",
                   "--no-dashboard", "--name", f"worker-{index}", "--local-directory", str(folder),
                   "--death-timeout", "30"],  # gone 30 s after its scheduler, should this process be killed
                  folder / f"worker-{index}.log", project_dir)


def _wait_for_address(scheduler_file: Path, process: subprocess.Popen, log: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dask scheduler exited: {log.read_text()[-2000:]}")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    raise RuntimeError(f"dask scheduler did not start within {timeout} s: {log.read_text()[-2000:]}")


def _wait_for_worker_count(address: str, count: int, timeout: float = 60) -> None:
    import distributed

    with log_levels({"distributed": logging.CRITICAL}), \
            distributed.Client(address, timeout=CONNECT_SECONDS, set_as_default=False) as client:
        deadline = time.monotonic() + timeout
        while len(client.nthreads()) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the loopback cluster has {len(client.nthreads())} workers, not {count}")
            time.sleep(0.05)

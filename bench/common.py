"""Small helpers the benchmarks share: timing, CPU time, process-tree peak memory, results."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from instrument_classifier.defaults import REPO_DIR

RESULTS_DIR = REPO_DIR / "bench" / "results"


def _pss_kb(pid: int) -> int:
    """Proportional set size of one process in KiB: its private pages plus its share of shared ones."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            return next((int(line.split()[1]) for line in handle if line.startswith("Pss:")), 0)
    except OSError:
        return 0


def _tree_memory_kb(root: int, pss: bool = False) -> int:
    """Resident memory of ``root`` and all its descendants, in KiB (Linux /proc).

    With ``pss``, each process's proportional set size instead: pages that
    forked workers share with their parent (a SoundFont loaded once) count
    once in the sum, not once per process.
    """
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields["PPid"]), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kb(pid) if pss else rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(command: list[str], *, env: dict | None = None, cwd: Path = REPO_DIR,
                 pss: bool = False) -> tuple[float, float]:
    """Run ``command`` in ``cwd``; return (wall seconds, peak RSS (or PSS) of its whole process tree in MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, _tree_memory_kb(process.pid, pss))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err}")
    return elapsed, peak / 1024


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of every child process this one has waited for, so far.

    The difference across a :func:`run_measured` call is the command's CPU
    time and that of every process it waited for (a local Dask cluster's
    workers): less sensitive than wall time to other jobs sharing the cores.
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def python() -> str:
    return sys.executable

#!/usr/bin/env python3
"""Benchmark: train.py on each Keras backend, the default network on the default dataset.

The model code is backend-neutral (README, *Determinism*); this measures
what a backend costs and gives.  Each case is ``train.py DATASET
--no-evaluate`` (the default network and settings, seed 42) in its own
process with ``KERAS_BACKEND`` set, the backends alternating within each of
``--runs`` rounds, so that a slow moment of a shared machine hits each alike.
JAX is found in ``.venv/jax-backend`` (`make test` and `make bench` install
it there); another backend must be importable already (e.g. ``PYTHONPATH``).

Reported per backend, medians over the rounds: training seconds (train.py's
own ``train_seconds``: the epochs, validation included), CPU seconds, an
epoch after the first (which traces or compiles), the whole process (start-up
and saving included) and its peak resident memory; the model's validation
and test error; whether every round of a backend trained the same model
(predictions.csv byte for byte); and the median over the rounds of the ratio
of each backend's training seconds to TensorFlow's.

    python -m bench.bench_backends [DATASET] [--backends tensorflow jax] [--runs 2]

Writes bench/results/backends.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

from bench.common import median, run_measured, write_results
from instrument_classifier.defaults import DEFAULT_DATASET_DIR, JAX_BACKEND_DIR


def _children_cpu() -> float:
    """User and system CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_on(backend: str, dataset: Path, models_dir: Path) -> dict:
    """One train.py run on ``backend``: its figures, read from the model folder it wrote."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    if backend == "jax":  # on JAX's path only: TensorFlow imports JAX wherever it finds it (README, Determinism)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(JAX_BACKEND_DIR), os.environ.get("PYTHONPATH")]))
    cpu = _children_cpu()
    wall, peak = run_measured([sys.executable, "train.py", str(dataset), "--no-evaluate", "-q",
                               "--models-dir", str(models_dir)], env=env)
    (model_dir,) = models_dir.iterdir()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["backend"] == backend, f"{backend} was asked for, {config['backend']} ran"
    with open(model_dir / "learning_curves.csv", newline="") as handle:
        epochs = [float(row["seconds"]) for row in csv.DictReader(handle)]
    with open(model_dir / "final_metrics.csv", newline="") as handle:
        errors = {row["split"]: float(row["error"]) for row in csv.DictReader(handle)}
    return {"train_seconds": config["train_seconds"], "train_cpu_seconds": config["train_cpu_seconds"],
            "versions": config["versions"],
            "process_seconds": round(wall, 2), "process_cpu_seconds": round(_children_cpu() - cpu, 2),
            "peak_rss_mib": round(peak), "epoch_seconds": round(median(epochs[1:]), 2),
            "first_epoch_seconds": round(epochs[0], 2), "valid_error": errors["valid"], "test_error": errors["test"],
            "predictions": (model_dir / "predictions.csv").read_bytes()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET_DIR,
                        help="a prepared dataset (default: the default one, `make pipeline`)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"],
                        choices=["tensorflow", "jax", "torch"], help="the backends, tensorflow first (the baseline)")
    parser.add_argument("--runs", type=int, default=2, help="rounds: one training per backend each (medians)")
    args = parser.parse_args(argv)
    if not (args.dataset / "training-data").is_dir():
        parser.error(f"{args.dataset} is not prepared: run `make pipeline` (or prepare_training.py) first")
    if args.backends[0] != "tensorflow":
        parser.error("--backends must start with tensorflow, the baseline")

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {backend: [] for backend in args.backends}
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as scratch:
        for round_ in range(args.runs):
            for backend in args.backends:
                run = train_on(backend, args.dataset, Path(scratch) / f"{backend}-{round_}")
                runs[backend].append(run)
                print(f"{backend}: trained in {run['train_seconds']:.1f} s (an epoch {run['epoch_seconds']:.1f} s), "
                      f"valid error {run['valid_error']:.2%}", flush=True)
    figures = ("train_seconds", "train_cpu_seconds", "epoch_seconds", "first_epoch_seconds", "process_seconds",
               "process_cpu_seconds", "peak_rss_mib", "valid_error", "test_error")
    cases = {backend: {**{name: median([run[name] for run in backend_runs]) for name in figures},
                       "same_model_every_round": len({run["predictions"] for run in backend_runs}) == 1,
                       "runs": [{name: run[name] for name in figures} for run in backend_runs]}
             for backend, backend_runs in runs.items()}
    for backend in args.backends:
        cases[backend]["speed_up_vs_tensorflow"] = round(median(
            [tf["train_seconds"] / run["train_seconds"] for tf, run in zip(runs["tensorflow"], runs[backend])]), 3)
    path = write_results("backends", {
        "dataset": str(args.dataset), "runs": args.runs, "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "cases": cases,
        "versions": {backend: backend_runs[0]["versions"] for backend, backend_runs in runs.items()}})
    print(f"\n{args.dataset.name}, train.py's default network and settings (seed 42), one process a training, "
          f"the backends alternating; medians of {args.runs} rounds; load average {load_before[0]:.1f} before.\n")
    print("| backend | training | CPU | an epoch (the first) | the process (CPU) | peak RSS | valid / test error "
          "| the same model every round | training speed-up vs TensorFlow |")
    print("|---|---|---|---|---|---|---|---|---|")
    for backend, row in cases.items():
        print(f"| {backend} | {row['train_seconds']:.1f} s | {row['train_cpu_seconds']:.1f} s "
              f"| {row['epoch_seconds']:.1f} s ({row['first_epoch_seconds']:.1f} s) "
              f"| {row['process_seconds']:.1f} s ({row['process_cpu_seconds']:.1f} s) | {row['peak_rss_mib']:,.0f} MiB "
              f"| {row['valid_error']:.2%} / {row['test_error']:.2%} "
              f"| {'yes' if row['same_model_every_round'] else 'no'} | {row['speed_up_vs_tensorflow']:.2f}x |")
    print(f"\nWrote {path}.")


if __name__ == "__main__":
    main()

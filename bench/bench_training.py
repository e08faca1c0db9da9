#!/usr/bin/env python3
"""Benchmark: training epochs of the default network, its template layer computed two ways.

The default network's first layer (``harmonic_templates``: 64 templates of
8 frames x 37 semitones slid over a one-channel chromagram) is most of a
training step's time.  Two ways to compute the same layer, same weights:

    conv2d      ``keras.layers.Conv2D``, as models.py built it before
    templates   ``models.HarmonicTemplates`` (now): a 1-D convolution along pitch with the 8 frames as channels

Both networks are built and compiled as ``train.py`` builds them (the
default architecture and settings, seed 42) on the default dataset as
``make pipeline`` prepared it, in one process; after one epoch each (which
traces the graphs), they train ``--runs`` more epochs each, alternating, so
that a slow moment of a shared machine hits both alike.  An epoch is the
training steps and the validation pass, as in ``train.py``.  Reported:
medians of the wall-clock and CPU seconds of an epoch, training examples per
second, and the median over the pairs of the ratio conv2d / templates.

    python -m bench.bench_training [DATASET] [--runs 5]

Writes bench/results/training.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import median, write_results
from instrument_classifier.cli import library_versions
from instrument_classifier.defaults import DEFAULT_DATASET_DIR, DEFAULT_SEED

CASES = ("conv2d", "templates")


def networks(dataset: Path):
    """The two networks, compiled as train.py compiles the default, and the run's data."""
    import keras

    from instrument_classifier import models
    from instrument_classifier.architectures import DEFAULT_ARCHITECTURE
    # train.py's own (private) steps, so that both networks are built and compiled exactly as it does.
    from instrument_classifier.training import _compiled_network, _Run, enable_determinism, training_settings
    from instrument_classifier.training_data import load_training_data

    data = load_training_data(dataset)
    settings = training_settings(DEFAULT_ARCHITECTURE)
    run = _Run(data, settings, DEFAULT_SEED)
    built = {}
    templates = models.HarmonicTemplates
    try:
        for case in CASES:
            enable_determinism(DEFAULT_SEED)  # the same initial weights for both
            # The network function looks the layer's name up when it runs: conv2d builds the layer as it was.
            models.HarmonicTemplates = keras.layers.Conv2D if case == "conv2d" else templates
            built[case] = _compiled_network(run, DEFAULT_ARCHITECTURE, DEFAULT_SEED, None)
    finally:
        models.HarmonicTemplates = templates
    return built, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET_DIR,
                        help="a prepared dataset (default: the default one, `make pipeline`)")
    parser.add_argument("--runs", type=int, default=5, help="measured epochs per case (medians)")
    args = parser.parse_args()
    if not (args.dataset / "training-data").is_dir():
        parser.error(f"{args.dataset} is not prepared: run `make pipeline` (or prepare_training.py) first")

    import instrument_classifier  # noqa: F401  (TensorFlow's environment, before it is imported)

    load_before = os.getloadavg()
    built, run = networks(args.dataset)
    batch_size = run.settings["batch_size"]
    from instrument_classifier.streaming import keras_input

    def epoch(network) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        network.fit(keras_input(run.train), validation_data=keras_input(run.valid), epochs=1, shuffle=False, verbose=0)
        return time.perf_counter() - wall, time.process_time() - cpu

    first = {case: epoch(network) for case, network in built.items()}
    runs: dict[str, list[tuple[float, float]]] = {case: [] for case in CASES}
    for _ in range(args.runs):
        for case, network in built.items():
            runs[case].append(epoch(network))
            print(f"{case}: an epoch in {runs[case][-1][0]:.1f} s ({runs[case][-1][1]:.1f} CPU s)", flush=True)
    cases = {case: {"epoch_seconds": round(median([wall for wall, _ in case_runs]), 2),
                    "epoch_cpu_seconds": round(median([cpu for _, cpu in case_runs]), 2),
                    "train_examples_per_second": round(run.n_train / median([wall for wall, _ in case_runs]), 1),
                    "first_epoch_seconds": round(first[case][0], 2), "runs": case_runs}
             for case, case_runs in runs.items()}
    pairs = list(zip(runs["conv2d"], runs["templates"]))
    speed_up = {"wall": round(median([a[0] / b[0] for a, b in pairs]), 3),
                "cpu": round(median([a[1] / b[1] for a, b in pairs]), 3)}
    path = write_results("training", {
        "dataset": str(args.dataset), "n_train": run.n_train, "n_valid": run.n_valid, "batch_size": batch_size,
        "runs": args.runs, "cpu_count": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": os.getloadavg(), "cases": cases, "speed_up_templates_vs_conv2d": speed_up,
        "versions": library_versions("keras", "tensorflow-cpu")})
    print(f"\n{args.dataset.name} ({run.n_train} training, {run.n_valid} validation clips), the default network "
          f"and settings, medians of {args.runs} epochs each (alternating, after a first one); load average "
          f"{load_before[0]:.1f} before.\n")
    print("| template layer | an epoch | CPU | training examples/s | the first epoch (tracing) |")
    print("|---|---|---|---|---|")
    for case in CASES:
        row = cases[case]
        print(f"| {case} | {row['epoch_seconds']:.1f} s | {row['epoch_cpu_seconds']:.1f} s "
              f"| {row['train_examples_per_second']:,.0f} | {row['first_epoch_seconds']:.1f} s |")
    print(f"\nSpeed-up, templates against conv2d (median of the {args.runs} pairs): {speed_up['wall']:.2f}x wall, "
          f"{speed_up['cpu']:.2f}x CPU.  Wrote {path}.")


if __name__ == "__main__":
    main()

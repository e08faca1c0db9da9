#!/usr/bin/env python3
"""Benchmark: one training epoch streamed from chunked features against the in-memory path, 10k and 100k clips.

The chromagrams are synthetic (random values in [0, 1], float32, 44 x 115:
valid input, not synthesised audio, so that 100,000 clips take seconds, not an
hour), written through the real store (``chunked_array.ChunkWriter``, shards
of ``READ_CHUNK`` rows, as ``extract_features.py --layout chunked`` writes
them); targets are random among 7 classes.  Each case runs in its own process
and fits one epoch, batch 32, as ``train.py`` does:

    memory   the features read whole into an ndarray, scaled, fit(x, y, shuffle=True)
    stream   ``streaming.ChromagramBatches`` over the chunked array, through ``streaming.keras_input``
             (a ``tf.data`` map over the batches on TensorFlow), fit(..., shuffle=False), as train.py does

Two networks: ``default`` (the default architecture, what train.py trains)
and ``probe`` (a pooling layer and a dense layer: nearly free, so that the
epoch measures the input pipeline itself, the strict comparison).  Reported:
examples per second of the epoch (start-up and loading excluded, given
apart) and the peak resident memory of the process tree.  The files are in
the page cache, as right after extraction.

    python -m bench.bench_streaming [--sizes 10000 100000] [--runs 3] [--default-sizes 10000] [--default-runs 3]

Writes bench/results/streaming.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import median, python, run_measured, write_results
from instrument_classifier.chunked_array import ChunkWriter, open_chunked
from instrument_classifier.cli import library_versions
from instrument_classifier.feature_extraction import READ_CHUNK

FRAMES, BINS, CLASSES, BATCH = 44, 115, 7, 32
GOALS = {"stream_vs_memory_throughput": 0.85}


def write_synthetic(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` random chromagrams in [0, 1] through the real chunked store, one shard at a time."""
    rng = np.random.default_rng(seed)
    with ChunkWriter(folder, row_shape=(FRAMES, BINS), dtype=np.float32, n_rows=n, chunk_rows=READ_CHUNK) as out:
        for first in range(0, n, READ_CHUNK):
            rows = min(READ_CHUNK, n - first)
            out[first:first + rows] = rng.random((rows, FRAMES, BINS), dtype=np.float32) ** 3
    return folder


def worker(args: argparse.Namespace) -> None:
    """One measured case in its own process: load, then one epoch."""
    import keras

    import instrument_classifier  # noqa: F401  (TensorFlow's environment, before it is imported)
    from instrument_classifier.models import build_model
    from instrument_classifier.scaling import ChromagramScaler, to_model_input
    from instrument_classifier.streaming import ChromagramBatches, keras_input
    from instrument_classifier.training import enable_determinism

    enable_determinism(0)
    started = time.perf_counter()
    chromagrams = open_chunked(args.features, verify=True)
    n = len(chromagrams)
    targets = np.eye(CLASSES, dtype=np.float32)[np.random.default_rng(1).integers(0, CLASSES, n)]
    scaler = ChromagramScaler().fit_rows(chromagrams, np.arange(n))
    if args.worker == "memory":
        x = to_model_input(np.asarray(chromagrams), scaler)  # (n, 44, 115, 1), as TrainingData.arrays
        fit_args, fit_kwargs = (x, targets), {"batch_size": BATCH, "shuffle": True}
    else:
        fit_args = (keras_input(ChromagramBatches(chromagrams, scaler, targets=targets, batch_size=BATCH,
                                                  shuffle=True)),)
        fit_kwargs = {"shuffle": False}
    if args.model == "default":
        network = build_model("relative-harmonic", (FRAMES, BINS, 1), CLASSES, floor=0.0, ceiling=1.0,
                              db_step=1 / 120, seed=0)
    else:
        inputs = keras.Input((FRAMES, BINS, 1))
        network = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(inputs)))
    network.compile(optimizer="adam", loss="categorical_crossentropy")
    loaded, cpu_loaded = time.perf_counter(), time.process_time()
    network.fit(*fit_args, epochs=1, verbose=0, **fit_kwargs)
    done, cpu_done = time.perf_counter(), time.process_time()
    Path(args.result).write_text(json.dumps({"load_seconds": loaded - started, "epoch_seconds": done - loaded,
                                             "examples_per_second": n / (done - loaded),
                                             "cpu_ms_per_example": 1000 * (cpu_done - cpu_loaded) / n}))


def measure(mode: str, model: str, features: Path, work: Path) -> dict:
    result = work / f"{mode}-{model}.json"
    _, peak_mib = run_measured([python(), "-m", "bench.bench_streaming", "--worker", mode, "--model", model,
                                "--features", str(features), "--result", str(result)])
    return {**{k: round(v, 2) for k, v in json.loads(result.read_text()).items()}, "peak_mib": round(peak_mib)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="clip counts measured with the probe network")
    parser.add_argument("--default-sizes", type=int, nargs="*", default=[10_000],
                        help="clip counts measured with the default network too (slow: ~3 ms a clip)")
    parser.add_argument("--runs", type=int, default=3, help="runs per probe case (medians)")
    parser.add_argument("--default-runs", type=int, default=3, help="runs per default-network case")
    parser.add_argument("--worker", choices=("memory", "stream"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=("probe", "default"), default="probe", help=argparse.SUPPRESS)
    parser.add_argument("--features", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    cases: dict[str, dict] = {}
    load_before = os.getloadavg()
    try:
        for n in sorted(set(args.sizes) | set(args.default_sizes)):
            features = write_synthetic(work / f"features-{n}", n)
            for model, runs in (("probe", args.runs if n in args.sizes else 0),
                                ("default", args.default_runs if n in args.default_sizes else 0)):
                for mode in ("memory", "stream") * runs:
                    result = measure(mode, model, features, work)
                    cases.setdefault(f"{model} {n} {mode}", {"runs": []})["runs"].append(result)
                    print(f"{model} {n} {mode}: {result}", flush=True)
            shutil.rmtree(features)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for case in cases.values():
        for key in ("examples_per_second", "epoch_seconds", "load_seconds", "cpu_ms_per_example", "peak_mib"):
            case[key] = round(median([run[key] for run in case["runs"]]), 2)
    results = {"synthetic": "random chromagrams in [0, 1] written through chunked_array.ChunkWriter, not audio",
               "batch_size": BATCH, "chunk_rows": READ_CHUNK, "runs": args.runs, "cpu_count": os.cpu_count(),
               "load_average_before": load_before, "load_average_after": os.getloadavg(), "cases": cases,
               "goals": GOALS, "versions": library_versions("keras", "tensorflow-cpu", "numpy")}
    results["stream_vs_memory"] = {
        key.removesuffix(" stream"): round(case["examples_per_second"]
                                           / cases[key.replace("stream", "memory")]["examples_per_second"], 3)
        for key, case in cases.items() if key.endswith("stream")}
    path = write_results("streaming", results)
    print(f"\nSynthetic chromagrams (random, valid values) through the real chunked store; batch {BATCH}; "
          f"medians of {args.runs} runs for the probe network, {args.default_runs} for the default network; "
          f"load average {load_before[0]:.1f} before.\n")
    print("| network, clips | in memory: examples/s | peak memory | streamed: examples/s | peak memory "
          "| streamed / in memory |")
    print("|---|---|---|---|---|---|")
    for key, ratio in results["stream_vs_memory"].items():
        memory, stream = cases[f"{key} memory"], cases[f"{key} stream"]
        print(f"| {key} | {memory['examples_per_second']:,.0f} | {memory['peak_mib']:,.0f} MiB "
              f"| {stream['examples_per_second']:,.0f} | {stream['peak_mib']:,.0f} MiB | {ratio:.2f} |")
    print(f"\nGoal: streamed >= {GOALS['stream_vs_memory_throughput']:.0%} of in-memory throughput, "
          f"memory flat in N.  Wrote {path}.")


if __name__ == "__main__":
    main()

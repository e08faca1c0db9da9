#!/usr/bin/env python3
"""Benchmark: generation and features on Dask, from 2,000 to 100,000 clips, and features against the old code.

1. Features side by side: ``extract_features.py`` on the same 2000 clips,
   ours (shards as Dask tasks on this machine's threads) against the same
   command at commit 88d4556 (its threads inside each shard, no Dask),
   exported with ``git archive``; rounds alternate, medians of ``--runs``.
   The chromagrams must be equal bit for bit.
2. Growth: ``generate_audio_samples.py`` (clean clips spread over several
   fonts) then ``extract_features.py`` at each of ``--sizes``: clips per
   second and the peak memory summed over the process tree (Dask's worker
   processes included; proportional set sizes, so that the SoundFonts the
   forked workers share with their parent count once); medians of
   ``--repeats`` runs up to 20,000 clips, one run above, the sizes
   interleaved in rounds.  Each command's fixed cost (Python, imports, Dask,
   starting the worker processes, loading the fonts in each) is measured on
   two shards (200 clips: both workers start and load their fonts, as at
   every larger size), and the rates are also given beyond it (the marginal
   rate: the clips beyond those 200 over the seconds beyond its time); CPU
   seconds per clip (the command's and its workers') beside the wall-clock
   rates, as they move less with the host.  The issue's goals:
   clips per second constant within 15 %, peak memory at most 2 GB at 100k
   and flat in N.  Above 26,500 clips the features are chunked (one .npy a
   shard), below it one npz.

    python -m bench.bench_scale [--sizes 2000 20000 100000] [--runs 5] [--repeats 3] [--fonts FluidR3_GM ...]

Writes bench/results/scale.json and prints markdown tables.  The 100k case
takes about ten minutes on 2 cores and 3.5 GB of disk (a temporary folder).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_generation import export_commit
from bench.common import children_cpu_seconds, median, python, run_measured, write_results
from instrument_classifier.feature_store import load_features
from instrument_classifier.generation import SHARD_SIZE

OLD_COMMIT = "88d4556"
FONTS = ["FluidR3_GM", "MuseScore_General", "TimGM6mb", "sf_GMbank"]
GOALS = {"features_ratio_2000": 1.10, "rate_spread": 0.15, "peak_mib_100k": 2048}


def generate(dataset: Path, count: int, fonts: list[str], seed: int = 42) -> tuple[float, float, float]:
    """(wall seconds, peak MiB, CPU seconds) of one generation."""
    before = children_cpu_seconds()
    seconds, mib = run_measured([python(), "generate_audio_samples.py", "-c", str(count), "-s", str(seed), "-o",
                                 str(dataset), "-q", "--soundfont", *fonts], pss=True)
    return seconds, mib, children_cpu_seconds() - before


def extract(dataset: Path, cwd: Path | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak MiB, CPU seconds) of one feature extraction."""
    command = [python(), "extract_features.py", str(dataset), "--overwrite", "-q"]
    before = children_cpu_seconds()
    seconds, mib = run_measured(command, pss=True, **({"cwd": cwd} if cwd else {}))
    return seconds, mib, children_cpu_seconds() - before


def features_side_by_side(work: Path, fonts: list[str], runs: int) -> dict:
    dataset = work / "side-by-side"
    generate(dataset, 2000, fonts)
    old = export_commit(OLD_COMMIT, work / "old")
    times: dict[str, list[float]] = {"ours": [], "old": []}
    arrays = {}
    for _ in range(runs):
        for name, cwd in (("ours", None), ("old", old)):
            seconds, _, _ = extract(dataset, cwd)
            times[name].append(seconds)
            arrays[name] = np.asarray(load_features(dataset)[0][:])
    result = {name: {"runs": [round(t, 2) for t in values], "median_s": round(median(values), 2)}
              for name, values in times.items()}
    result["ratio"] = round(result["ours"]["median_s"] / result["old"]["median_s"], 3)
    result["same_chromagrams"] = bool(arrays["ours"].tobytes() == arrays["old"].tobytes())
    shutil.rmtree(dataset)
    return result


def growth(work: Path, sizes: list[int], fonts: list[str], repeats: int = 3,
           startup_clips: int = 2 * SHARD_SIZE) -> list[dict]:
    """Each size: generation then features, medians of ``repeats`` runs up to 20,000 clips (one above).

    The sizes run in ``repeats`` interleaved rounds (the start-up, then each
    size; a size above 20,000 clips in the middle round only), so that the
    machine's drift over the half hour falls on every size alike.  The
    start-up cost of each command (Python, imports, Dask, the worker
    processes, the fonts) is measured on ``startup_clips`` clips, two shards
    by default, so that both local workers start and load their fonts as at
    every larger size (a single shard runs in this process, with no workers:
    it missed ~2 s of their cost); "after start-up" rates divide the clips
    beyond it by the time beyond it.  CPU seconds (the command's and its worker
    processes') are the steadier figure of the work per clip.
    """
    stages = ("generation", "features")
    counts = [startup_clips, *sizes]
    runs = {count: {key: {stage: [] for stage in stages} for key in ("times", "peaks", "cpus")} for count in counts}
    layouts = {}
    for round_ in range(repeats):
        for count in counts:
            if count > 20_000 and round_ != repeats // 2:
                continue
            dataset = work / f"growth-{count}"
            for stage, measured in (("generation", lambda: generate(dataset, count, fonts)),
                                    ("features", lambda: extract(dataset))):
                seconds, mib, cpu = measured()
                for key, value in (("times", seconds), ("peaks", mib), ("cpus", cpu)):
                    runs[count][key][stage].append(value)
            layouts[count] = "chunked" if (dataset / "features" / "chromagrams").is_dir() else "npz"
            shutil.rmtree(dataset)
            print(f"round {round_ + 1}, {count} clips: "
                  f"{ {stage: runs[count]['times'][stage][-1] for stage in stages} }", flush=True)

    startup_s = {stage: median(runs[startup_clips]["times"][stage]) for stage in stages}
    startup_cpu = {stage: median(runs[startup_clips]["cpus"][stage]) for stage in stages}
    print({"startup_s": startup_s, "startup_cpu_s": startup_cpu}, flush=True)
    rows = []
    for count in sizes:
        m = runs[count]
        row: dict = {"clips": count, "runs": len(m["times"]["generation"]), "features_layout": layouts[count]}
        for stage in stages:
            seconds = median(m["times"][stage])
            row[f"{stage}_s"] = round(seconds, 1)
            row[f"{stage}_runs_s"] = [round(t, 1) for t in m["times"][stage]]
            row[f"{stage}_clips_per_s"] = round(count / seconds, 1)
            row[f"{stage}_clips_per_s_after_startup"] = round((count - startup_clips)
                                                              / max(seconds - startup_s[stage], 1e-9), 1)
            row[f"{stage}_peak_mib"] = round(max(m["peaks"][stage]))
            cpu = median(m["cpus"][stage])
            row[f"{stage}_cpu_s"] = round(cpu, 1)
            row[f"{stage}_cpu_ms_per_clip"] = round(1000 * cpu / count, 3)
            row[f"{stage}_cpu_ms_per_clip_after_startup"] = round(1000 * (cpu - startup_cpu[stage])
                                                                  / (count - startup_clips), 3)
        row["startup_clips"] = startup_clips
        row["startup_s"] = {stage: round(value, 2) for stage, value in startup_s.items()}
        row["startup_cpu_s"] = {stage: round(value, 2) for stage, value in startup_cpu.items()}
        rows.append(row)
        print(rows[-1], flush=True)
    return rows


def spread(values: list[float]) -> float:
    """(max - min) / max: 0 when constant."""
    return round((max(values) - min(values)) / max(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--runs", type=int, default=5, help="rounds of the side-by-side features comparison")
    parser.add_argument("--fonts", nargs="+", default=FONTS, help="SoundFonts the clips are spread over")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per size up to 20,000 clips, and of the start-up measurement (medians)")
    parser.add_argument("--skip-side-by-side", action="store_true")
    args = parser.parse_args()
    if min(args.sizes) <= 2 * SHARD_SIZE:
        parser.error(f"--sizes must exceed the {2 * SHARD_SIZE}-clip start-up measurement")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        side = None if args.skip_side_by_side else features_side_by_side(work, args.fonts, args.runs)
        rows = growth(work, args.sizes, args.fonts, args.repeats)
    results = {"goals": GOALS, "features_side_by_side_2000": side, "growth": rows}
    for stage in ("generation", "features"):  # e.g. generation_rate_spread, features_cpu_per_clip_spread_after_startup
        for name, measure in (("rate", "clips_per_s"), ("cpu_per_clip", "cpu_ms_per_clip")):
            for after in ("", "_after_startup"):
                results[f"{stage}_{name}_spread{after}"] = spread([r[f"{stage}_{measure}{after}"] for r in rows])
    path = write_results("scale", results)
    if side:
        print("\n| features, 2000 clips | median | runs |\n|---|---|---|")
        for name in ("ours", "old"):
            print(f"| {name} | {side[name]['median_s']} s | {side[name]['runs']} |")
        print(f"ratio ours / old: {side['ratio']} (goal <= {GOALS['features_ratio_2000']}); "
              f"same chromagrams: {side['same_chromagrams']}")
    print("\n| clips (runs) | generation | clips/s (after start-up) | CPU ms/clip (after start-up) | peak memory "
          "| features | clips/s (after start-up) | CPU ms/clip (after start-up) | peak memory | layout |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r['clips']:,} ({r['runs']})"]
        for stage in ("generation", "features"):
            cells += [f"{r[f'{stage}_s']} s",
                      f"{r[f'{stage}_clips_per_s']} ({r[f'{stage}_clips_per_s_after_startup']})",
                      f"{r[f'{stage}_cpu_ms_per_clip']} ({r[f'{stage}_cpu_ms_per_clip_after_startup']})",
                      f"{r[f'{stage}_peak_mib']} MiB"]
        print("| " + " | ".join([*cells, r["features_layout"]]) + " |")
    print(f"start-up ({rows[0]['startup_clips']} clips): {rows[0]['startup_s']}" if rows else "")

    def spreads(name: str) -> str:
        return ", ".join(f"{stage} {results[f'{stage}_{name}_spread']} "
                         f"({results[f'{stage}_{name}_spread_after_startup']} after start-up)"
                         for stage in ("generation", "features"))

    print(f"rate spread: {spreads('rate')} (goal <= {GOALS['rate_spread']}); "
          f"CPU per clip spread: {spreads('cpu_per_clip')}; {path}")


if __name__ == "__main__":
    main()

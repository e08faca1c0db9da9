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
   ``--repeats`` runs up to 20,000 clips, one run above.  Each command's
   start-up (Python, imports, Dask, loading the fonts) is measured on 20
   clips, and the rates are also given after it.  The issue's goals:
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
from bench.common import median, python, run_measured, write_results
from instrument_classifier.feature_store import load_features

OLD_COMMIT = "88d4556"
FONTS = ["FluidR3_GM", "MuseScore_General", "TimGM6mb", "sf_GMbank"]
GOALS = {"features_ratio_2000": 1.10, "rate_spread": 0.15, "peak_mib_100k": 2048}


def generate(dataset: Path, count: int, fonts: list[str], seed: int = 42) -> tuple[float, float]:
    return run_measured([python(), "generate_audio_samples.py", "-c", str(count), "-s", str(seed), "-o",
                         str(dataset), "-q", "--soundfont", *fonts], pss=True)


def extract(dataset: Path, cwd: Path | None = None) -> tuple[float, float]:
    command = [python(), "extract_features.py", str(dataset), "--overwrite", "-q"]
    return run_measured(command, pss=True, **({"cwd": cwd} if cwd else {}))


def features_side_by_side(work: Path, fonts: list[str], runs: int) -> dict:
    dataset = work / "side-by-side"
    generate(dataset, 2000, fonts)
    old = export_commit(OLD_COMMIT, work / "old")
    times: dict[str, list[float]] = {"ours": [], "old": []}
    arrays = {}
    for _ in range(runs):
        for name, cwd in (("ours", None), ("old", old)):
            seconds, _ = extract(dataset, cwd)
            times[name].append(seconds)
            arrays[name] = np.asarray(load_features(dataset)[0][:])
    result = {name: {"runs": [round(t, 2) for t in values], "median_s": round(median(values), 2)}
              for name, values in times.items()}
    result["ratio"] = round(result["ours"]["median_s"] / result["old"]["median_s"], 3)
    result["same_chromagrams"] = bool(arrays["ours"].tobytes() == arrays["old"].tobytes())
    shutil.rmtree(dataset)
    return result


def growth(work: Path, sizes: list[int], fonts: list[str], repeats: int = 3, startup_clips: int = 20) -> list[dict]:
    """Each size: generation then features, medians of ``repeats`` runs up to 20,000 clips (one above).

    The start-up cost of each command (Python, imports, Dask, the fonts) is
    measured on ``startup_clips`` clips, medians of ``repeats``; "after
    start-up" rates divide the clips by the time beyond it.
    """
    def measure(count: int, runs: int) -> dict:
        times: dict[str, list[float]] = {"generation": [], "features": []}
        peaks: dict[str, list[float]] = {"generation": [], "features": []}
        layout = "npz"
        for _ in range(runs):
            dataset = work / f"growth-{count}"
            for stage, seconds_mib in (("generation", lambda: generate(dataset, count, fonts)),
                                       ("features", lambda: extract(dataset))):
                seconds, mib = seconds_mib()
                times[stage].append(seconds)
                peaks[stage].append(mib)
            layout = "chunked" if (dataset / "features" / "chromagrams").is_dir() else "npz"
            shutil.rmtree(dataset)
        return {"times": times, "peaks": peaks, "layout": layout}

    startup = measure(startup_clips, repeats)
    startup_s = {stage: median(values) for stage, values in startup["times"].items()}
    print({"startup_s": startup_s}, flush=True)
    rows = []
    for count in sizes:
        m = measure(count, repeats if count <= 20_000 else 1)
        row: dict = {"clips": count, "runs": len(m["times"]["generation"]), "features_layout": m["layout"]}
        for stage in ("generation", "features"):
            seconds = median(m["times"][stage])
            row[f"{stage}_s"] = round(seconds, 1)
            row[f"{stage}_runs_s"] = [round(t, 1) for t in m["times"][stage]]
            row[f"{stage}_clips_per_s"] = round(count / seconds, 1)
            row[f"{stage}_clips_per_s_after_startup"] = round(count / max(seconds - startup_s[stage], 1e-9), 1)
            row[f"{stage}_peak_mib"] = round(max(m["peaks"][stage]))
        row["startup_s"] = {stage: round(value, 2) for stage, value in startup_s.items()}
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
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        side = None if args.skip_side_by_side else features_side_by_side(work, args.fonts, args.runs)
        rows = growth(work, args.sizes, args.fonts, args.repeats)
    results = {"goals": GOALS, "features_side_by_side_2000": side, "growth": rows,
               "generation_rate_spread": spread([r["generation_clips_per_s"] for r in rows]),
               "features_rate_spread": spread([r["features_clips_per_s"] for r in rows]),
               "generation_rate_spread_after_startup":
                   spread([r["generation_clips_per_s_after_startup"] for r in rows]),
               "features_rate_spread_after_startup": spread([r["features_clips_per_s_after_startup"] for r in rows])}
    path = write_results("scale", results)
    if side:
        print("\n| features, 2000 clips | median | runs |\n|---|---|---|")
        for name in ("ours", "old"):
            print(f"| {name} | {side[name]['median_s']} s | {side[name]['runs']} |")
        print(f"ratio ours / old: {side['ratio']} (goal <= {GOALS['features_ratio_2000']}); "
              f"same chromagrams: {side['same_chromagrams']}")
    print("\n| clips (runs) | generation | clips/s (after start-up) | peak memory | features | clips/s (after start-up) "
          "| peak memory | layout |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clips']:,} ({r['runs']}) | {r['generation_s']} s | {r['generation_clips_per_s']} "
              f"({r['generation_clips_per_s_after_startup']}) | {r['generation_peak_mib']} MiB | {r['features_s']} s | "
              f"{r['features_clips_per_s']} ({r['features_clips_per_s_after_startup']}) | {r['features_peak_mib']} MiB "
              f"| {r['features_layout']} |")
    print(f"start-up (20 clips): {rows[0]['startup_s'] if rows else '-'}")
    print(f"rate spread: generation {results['generation_rate_spread']} "
          f"({results['generation_rate_spread_after_startup']} after start-up), features "
          f"{results['features_rate_spread']} ({results['features_rate_spread_after_startup']}) "
          f"(goal <= {GOALS['rate_spread']}); {path}")


if __name__ == "__main__":
    main()

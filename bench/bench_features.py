#!/usr/bin/env python3
"""Benchmark: reassigned chromagrams of 2000 clips, ours against a plain numpy version, same run.

Ours: ``ChromagramExtractor.transform`` (instrument_classifier/features.py),
decoding and transforming 256 clips at a time on 2 threads, as
``extract_features.py`` does.  Baseline, shipped below: a plain vectorised
float64 numpy version of the same algorithm (``np.fft``, time-domain windows,
the one-sample-shifted frame transformed explicitly, ``np.angle`` on every
coefficient), same decoding.  The seed's ``tfr`` took about 28 s for 2000
clips; it no longer runs on current numpy, so that figure is quoted, not
re-measured.

Each measured case runs in its own process (peak memory of the process tree);
the figures are medians of ``--runs`` runs.  Memory is also measured at 8000
clips (the 2000 files read 4 times) to show it stays flat.  Without a
dataset at ``--dataset``, clips are synthesised (random harmonic tones with
envelopes, 16-bit FLAC) into a temporary folder.

    python -m bench.bench_features [--dataset data/working/single-notes-2000] [--runs 3]

Writes bench/results/features.json and prints a markdown table.
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
import pandas as pd
import soundfile as sf

from bench.common import median, python, run_measured, write_results
from instrument_classifier.cli import library_versions
from instrument_classifier.dataset import PARAMETERS_CSV, SingleToneDataset, read_clips
from instrument_classifier.defaults import CLIP_SAMPLES, SAMPLE_RATE, SINGLE_FONT_DATASET_DIR
from instrument_classifier.feature_extraction import READ_CHUNK
from instrument_classifier.features import ChromagramExtractor

TFR_SECONDS_2000 = 28.0  # the figure for the seed's tfr-based extractor
GOALS = {"transform_seconds_2000": 4.0, "speedup_vs_tfr": 7.0, "speedup_vs_plain": 2.5, "peak_mib": 1536}


def plain_chromagrams(clips: np.ndarray, extractor: ChromagramExtractor, chunk: int = 1) -> np.ndarray:
    """The baseline: the algorithm of features.py written plainly, float64, no tricks.

    Parameters
    ----------
    clips : [shape=(N, n_samples)]

    Returns
    -------
    [shape=(N, n_frames, n_bins)] float32
    """
    p = extractor
    n, h, sr = p.block_size, p.hop_size, p.sample_rate
    n_clips, length = clips.shape
    n_frames, n_bins = p.n_frames(length), p.n_bins
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann
    ramp = np.arange(n) - n / 2
    starts = np.arange(n_frames)[:, None] * h + np.arange(n)  # (F, N) sample index of each frame
    out = np.empty((n_clips, n_frames, n_bins), dtype=np.float32)
    for first in range(0, n_clips, chunk):
        block = clips[first:first + chunk].astype(np.float64)
        c = len(block)
        padded = np.zeros((c, 1 + (n_frames - 1) * h + n))  # one zero before the clip
        padded[:, 1:1 + length] = block
        frames = padded[:, 1 + starts]  # (c, F, N)
        shifted = padded[:, starts]  # each frame one sample earlier
        x = np.fft.rfft(frames * window, axis=-1)
        x_prev = np.fft.rfft(shifted * window, axis=-1)
        x_t = np.fft.rfft(frames * (ramp * window), axis=-1)
        magnitude = np.abs(x)
        freq = np.mod(np.angle(x * np.conj(x_prev)), 2 * np.pi) / (2 * np.pi) * sr
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.real(x_t * np.conj(x)) / magnitude ** 2
            pitch = 12 * np.log2(freq / p.base_frequency)
        offset = np.clip(np.nan_to_num(offset), -n / 2, n / 2)
        frame = np.clip(np.arange(n_frames)[None, :, None] + np.floor(offset / h + 0.5), 0, n_frames - 1)
        pitch_bin = np.floor(np.nan_to_num(pitch, neginf=-1e9) * p.bin_division + 0.5) - p.bin_range[0] * p.bin_division
        k = np.arange(x.shape[-1])
        keep = ((magnitude / window.sum() >= 10 ** (p.gate_db / 20)) & (pitch_bin >= 0) & (pitch_bin < n_bins)
                & (k > 0) & (k < n // 2))
        clip_index = np.arange(c)[:, None, None]
        cell = ((clip_index * n_frames + frame) * n_bins + pitch_bin).astype(np.int64)
        summed = np.bincount(cell[keep], weights=magnitude[keep], minlength=c * n_frames * n_bins)
        level = 20 * np.log10(np.maximum(summed / window.sum(), 10 ** (p.floor_db / 20)))
        level = np.clip((level - p.floor_db) / (p.top_db - p.floor_db), 0, 1)
        out[first:first + c] = level.reshape(c, n_frames, n_bins)
    return out


def synthesise_dataset(path: Path, count: int, *, unique: int = 250, seed: int = 0) -> Path:
    """A dataset folder of ``count`` rows over ``unique`` synthetic 16-bit FLAC clips.

    Random harmonic tones (A0..C8 range, 1/h^p partials with inharmonicity,
    per-partial decay, attack, note-off at 1.0 s, some breath noise), peaks
    -31..-10 dBFS like the FluidSynth clips.  Rows repeat the files, so decoding
    still reads one file per row.
    """
    rng = np.random.default_rng(seed)
    unique = min(unique, count)
    t = np.arange(CLIP_SAMPLES, dtype=np.float32) / SAMPLE_RATE
    (path / "audio").mkdir(parents=True)
    rows, families = [], ["piano", "organ", "guitar", "strings", "brass", "reed", "pipe"]
    for i in range(unique):
        midi = int(rng.integers(24, 100))
        f0 = 440 * 2 ** ((midi - 69) / 12)
        h = np.arange(1, int(min(40, 0.45 * SAMPLE_RATE / f0)) + 1)
        freqs = f0 * h * np.sqrt(1 + rng.uniform(0, 3e-4) * h ** 2)
        amps = rng.uniform(0.2, 1, len(h)) / h ** rng.uniform(0.5, 2)
        decays = rng.uniform(0.2, 4) * (1 + h / 8)
        phases = rng.uniform(0, 2 * np.pi, len(h))
        partials = np.sin(2 * np.pi * freqs[:, None].astype(np.float32) * t + phases[:, None].astype(np.float32))
        partials *= (amps[:, None] * np.exp(-decays[:, None] * t)).astype(np.float32)
        x = partials.sum(axis=0)
        release = np.where(t < 1.0, 1, np.exp(-(t - 1.0) * rng.uniform(6, 60)))
        envelope = np.minimum(t / rng.uniform(0.003, 0.06), 1) * release
        if rng.random() < 0.3:
            x = x + rng.uniform(0.001, 0.02) * rng.standard_normal(len(t))
        x = x * envelope
        x *= 10 ** (rng.uniform(-31, -10) / 20) / np.abs(x).max()
        sf.write(path / "audio" / f"tone_{i:04d}.flac", x, SAMPLE_RATE, subtype="PCM_16")
    for i in range(count):
        rows.append({"sample_id": i, "family_name": families[i % len(families)], "midi_number": 60,
                     "audio_file": f"audio/tone_{i % unique:04d}.flac"})
    pd.DataFrame(rows).to_csv(path / PARAMETERS_CSV, index=False)
    return path


def worker(args: argparse.Namespace) -> None:
    """One measured case, in its own process: decode and transform, as extract_features.py does."""
    paths = [Path(p) for p in json.loads(Path(args.paths).read_text())]
    extractor = ChromagramExtractor()
    transform = extractor.transform if args.worker == "ours" else (
        lambda clips, jobs: plain_chromagrams(clips, extractor))
    started = time.perf_counter()
    decode = compute = compute_cpu = 0.0
    out = np.empty((len(paths), extractor.n_frames(CLIP_SAMPLES), extractor.n_bins), dtype=np.float32)
    for first in range(0, len(paths), READ_CHUNK):
        tick = time.perf_counter()
        clips = read_clips(paths[first:first + READ_CHUNK], jobs=args.jobs)
        decode += time.perf_counter() - tick
        tick, cpu_tick = time.perf_counter(), time.process_time()
        out[first:first + len(clips)] = transform(clips, jobs=args.jobs)
        compute += time.perf_counter() - tick
        compute_cpu += time.process_time() - cpu_tick
    total = time.perf_counter() - started
    Path(args.result).write_text(json.dumps({"decode": decode, "transform": compute, "total": total,
                                             "transform_cpu": compute_cpu}))


def measure(case: str, paths: list[Path], work: Path, jobs: int) -> dict:
    """Run one case in a subprocess; its own timings plus the tree's peak RSS."""
    listing, result = work / f"{case}-paths.json", work / f"{case}-result.json"
    listing.write_text(json.dumps([str(p) for p in paths]))
    _, peak_mib = run_measured([python(), "-m", "bench.bench_features", "--worker", case, "--paths", str(listing),
                                "--result", str(result), "--jobs", str(jobs)])
    timings = json.loads(result.read_text())
    return {**{k: round(v, 3) for k, v in timings.items()}, "peak_mib": round(peak_mib)}


def agreement(paths: list[Path], count: int = 64) -> dict:
    """Ours against the plain version on the first clips: how close are the outputs."""
    clips = read_clips(paths[:count])
    extractor = ChromagramExtractor()
    ours, plain = extractor.transform(clips), plain_chromagrams(clips, extractor)
    diff = np.abs(ours - plain)
    return {"clips": len(clips), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "cells_off_by_more_than_0.01": float((diff > 0.01).mean()),
            "argmax_bin_agreement": float((ours.argmax(-1) == plain.argmax(-1))[ours.max(-1) > 0].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=SINGLE_FONT_DATASET_DIR,
                        help="dataset to read (synthetic clips when it does not exist)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (medians reported)")
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--big", type=int, default=8000, help="clip count of the memory check")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--worker", choices=("ours", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        if (args.dataset / PARAMETERS_CSV).is_file():
            source = f"{args.dataset}"
            dataset = SingleToneDataset(args.dataset)
        else:
            print(f"{args.dataset} not found: synthesising clips", flush=True)
            source = f"synthetic harmonic tones ({min(250, args.clips)} files, rows repeat them)"
            dataset = SingleToneDataset(synthesise_dataset(work / "synthetic", args.clips))
        files = dataset.audio_paths
        paths = [files[i % len(files)] for i in range(args.clips)]
        big = [files[i % len(files)] for i in range(args.big)]
        read_clips(paths, jobs=args.jobs)  # warm the page cache: every case reads from memory
        load_before = os.getloadavg()
        runs: dict[str, list[dict]] = {"ours": [], "plain": [], "ours_big": []}
        for run in range(args.runs):
            for case, case_paths in (("ours", paths), ("plain", paths), ("ours_big", big)):
                runs[case].append(measure(case.removesuffix("_big"), case_paths, work, args.jobs))
                print(f"run {run + 1} {case}: {runs[case][-1]}", flush=True)
        load_after = os.getloadavg()
        agree = agreement(paths)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(case: str, key: str) -> float:
        return round(median([r[key] for r in runs[case]]), 2)

    ours_transform, ours_total, plain_total = med("ours", "transform"), med("ours", "total"), med("plain", "total")
    tfr_seconds = TFR_SECONDS_2000 * args.clips / 2000  # the quoted figure, scaled to --clips
    goal_seconds = GOALS["transform_seconds_2000"] * args.clips / 2000
    results = {
        "clips": args.clips, "big_clips": args.big, "jobs": args.jobs, "runs": args.runs, "source": source,
        "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
        "medians_seconds": {
            "ours_transform": ours_transform, "ours_decode": med("ours", "decode"), "ours_total": ours_total,
            "plain_transform": med("plain", "transform"), "plain_total": plain_total,
            "ours_big_transform": med("ours_big", "transform"), "ours_big_total": med("ours_big", "total"),
            "ours_transform_cpu": med("ours", "transform_cpu"), "plain_transform_cpu": med("plain", "transform_cpu"),
        },
        "peak_mib": {"ours": med("ours", "peak_mib"), "plain": med("plain", "peak_mib"),
                     "ours_big": med("ours_big", "peak_mib")},
        "tfr_seconds_quoted": TFR_SECONDS_2000, "tfr_seconds_scaled": tfr_seconds,
        "speedup_vs_tfr": round(tfr_seconds / ours_transform, 1),
        "speedup_vs_plain_incl_decoding": round(plain_total / ours_total, 1),
        "speedup_vs_plain_transform": round(med("plain", "transform") / ours_transform, 1),
        "goals": GOALS,
        "agreement_with_plain": agree,
        "runs_raw": runs,
        "versions": library_versions("numpy", "scipy", "soundfile"),
    }
    results["goals_met"] = {
        "transform_seconds_2000": ours_transform <= goal_seconds,
        "speedup_vs_tfr": results["speedup_vs_tfr"] >= GOALS["speedup_vs_tfr"],
        "speedup_vs_plain": results["speedup_vs_plain_incl_decoding"] >= GOALS["speedup_vs_plain"],
        "peak_mib": max(results["peak_mib"]["ours"], results["peak_mib"]["ours_big"]) < GOALS["peak_mib"],
    }
    path = write_results("features", results)
    m, peak = results["medians_seconds"], results["peak_mib"]
    print(f"\nSource: {source}; {args.jobs} threads; medians of {args.runs} runs; "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.\n")
    print(f"| {args.clips} clips | transform (no decoding) | total incl. decoding | peak memory |")
    print("|---|---|---|---|")
    print(f"| ours (features.py, {args.jobs} threads) | {ours_transform} s | {ours_total} s | {peak['ours']} MiB |")
    print(f"| ours, CPU time of the transform (all threads) | {m['ours_transform_cpu']} s | | |")
    print(f"| plain numpy, same algorithm (float64, 1 thread) | {m['plain_transform']} s | {plain_total} s "
          f"| {peak['plain']} MiB |")
    print(f"| plain, CPU time of the transform | {m['plain_transform_cpu']} s | | |")
    print(f"| original tfr (issue's figure for 2000 clips, not re-run) | {tfr_seconds:g} s | | |")
    print(f"| speed-up vs plain | {results['speedup_vs_plain_transform']}x "
          f"| {results['speedup_vs_plain_incl_decoding']}x (goal >= 2.5x) | |")
    print(f"| speed-up vs tfr | {results['speedup_vs_tfr']}x (goal >= 7x, <= {goal_seconds:g} s) | | |")
    print(f"| ours, {args.big} clips | {m['ours_big_transform']} s | {m['ours_big_total']} s "
          f"| {peak['ours_big']} MiB |")
    print(f"\nOurs vs plain on {agree['clips']} clips: max |diff| {agree['max_abs_diff']:.2g}, "
          f"mean {agree['mean_abs_diff']:.2g}, "
          f"cells off by > 0.01: {100 * agree['cells_off_by_more_than_0.01']:.3f} %, "
          f"per-frame argmax bin agreement {100 * agree['argmax_bin_agreement']:.2f} %.")
    print(f"Goals met: {results['goals_met']}.  Wrote {path}.")


if __name__ == "__main__":
    main()

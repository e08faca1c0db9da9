#!/usr/bin/env python3
"""Benchmark: generating 2000 clips on Dask, locally and on a cluster, against the previous pool and the original method.

Ours: `generate_audio_samples.py -c 2000 -j 2` (in-process FluidSynth, fixed
shards as Dask tasks on a local cluster of 2 worker processes, FLAC + MIDI
written).
The previous implementation: the same command at commit 88d4556 (its
home-made process pool), exported with `git archive` and run in the same
rounds as ours, so both see the same machine load.
A real cluster on this machine: `dask scheduler` and 2 `dask worker`
processes (one thread each) over TCP on loopback, started once; the same
command with `--scheduler tcp://127.0.0.1:PORT`.  Its bytes must equal the
local run's.  (The local run's equalled the previous pool's until the
renderer began to stop every note before the next: the previous version's
clips hold the release of the note before them, so its bytes now differ and
it is a baseline of speed only; the table says whether they are the same.)
Original method: for each note, music21 writes the MIDI file, the `fluidsynth`
command-line program renders it in a subprocess and the audio is read back
(run 2 at a time, as fair to the 2 cores as ours).
Also: loading the 2000 FLAC clips with SingleToneDataset.

    python -m bench.bench_generation [--count 2000] [--runs 5] [--original-runs 3]
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from bench.common import children_cpu_seconds, median, python, run_measured, write_results
from instrument_classifier.dataset import SingleToneDataset
from instrument_classifier.defaults import REPO_DIR
from instrument_classifier.loopback_cluster import loopback_cluster
from instrument_classifier.synthesis import SYSTEM_SOUNDFONTS

# The last commit of the home-made process pool, before generation ran on Dask.
POOL_COMMIT = "88d4556"


def original_method(parameters: pd.DataFrame, soundfont: Path, workdir: Path, jobs: int = 2) -> np.ndarray:
    """The seed's way: music21 MIDI, then a fluidsynth CLI subprocess per note, then read back."""
    from music21 import instrument, note, stream

    def one(row) -> np.ndarray:
        part = stream.Stream()
        part_instrument = instrument.instrumentFromMidiProgram(int(row.midi_program))
        part_instrument.midiProgram = int(row.midi_program)
        part.append(part_instrument)
        n = note.Note(int(row.midi_number), quarterLength=2.0)  # 1 s at the default 120 bpm
        n.volume.velocity = int(row.velocity)
        part.append(n)
        midi_path = workdir / f"{row.sample_id}.mid"
        wav_path = workdir / f"{row.sample_id}.wav"
        part.write("midi", fp=str(midi_path))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.5", "-r", "44100", "-F", str(wav_path), str(soundfont),
                        str(midi_path)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        audio, _ = sf.read(wav_path, dtype="float32")
        return audio.mean(axis=1)[:88200]

    with ThreadPoolExecutor(jobs) as pool:
        clips = list(pool.map(one, parameters.itertuples()))
    return np.stack([np.pad(c, (0, 88200 - len(c))) for c in clips])


def export_commit(commit: str, folder: Path) -> Path:
    """The repository's tree at ``commit``, written into ``folder`` (no worktree registered)."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO_DIR), "archive", commit], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def same_bytes(one: Path, two: Path) -> bool:
    """Whether two datasets hold the same parameters.csv, audio and MIDI files, byte for byte."""
    if not filecmp.cmp(one / "parameters.csv", two / "parameters.csv", shallow=False):
        return False
    for folder in ("audio", "midi"):
        names = sorted(p.name for p in (one / folder).iterdir())
        if names != sorted(p.name for p in (two / folder).iterdir()):
            return False
        _, mismatch, errors = filecmp.cmpfiles(one / folder, two / folder, names, shallow=False)
        if mismatch or errors:
            return False
    return True


def measure_generation(args: argparse.Namespace, soundfont: Path, work: Path) -> dict:
    """Ours locally, the previous pool and ours on a loopback cluster, in rounds; the first run of each kept."""
    pool_tree = export_commit(POOL_COMMIT, work / "pool-tree")
    common = ["-c", str(args.count), "-s", "42", "-f", "flac", "-q", "--soundfont", str(soundfont)]
    times: dict[str, list[float]] = {"ours": [], "pool": [], "cluster": []}
    peaks: dict[str, list[float]] = {"ours": [], "pool": []}
    cpus: dict[str, list[float]] = {"ours": [], "pool": [], "cluster": []}
    loads = []
    with loopback_cluster(2, dashboard=True) as cluster:
        commands = {
            "ours": (REPO_DIR, ["-j", "2"]),
            "pool": (pool_tree, ["-j", "2"]),
            "cluster": (REPO_DIR, ["--scheduler", cluster.address]),
        }
        for run in range(args.runs):
            for name, (tree, extra) in commands.items():
                out = work / f"{name}-{run}"
                before = children_cpu_seconds()
                seconds, peak = run_measured([python(), str(tree / "generate_audio_samples.py"), *common,
                                              "-o", str(out), *extra], cwd=tree)
                # The command's and its local cluster's workers' CPU (a standing cluster's is not counted).
                cpu = children_cpu_seconds() - before
                times[name].append(seconds)
                cpus[name].append(cpu)
                if name in peaks:
                    peaks[name].append(peak)
                print(f"{name} run {run + 1}: {seconds:.2f} s, CPU {cpu:.2f} s, peak {peak:.0f} MiB", flush=True)
                if name == "ours":
                    started = time.perf_counter()
                    SingleToneDataset(out).samples
                    loads.append(time.perf_counter() - started)
                if run:
                    shutil.rmtree(out)
    return {
        "clips": args.count,
        "ours_seconds_median": round(median(times["ours"]), 2), "ours_seconds": [round(s, 2) for s in times["ours"]],
        "ours_peak_mib_median": round(median(peaks["ours"])),
        "ours_cpu_seconds_median": round(median(cpus["ours"]), 2),
        "pool_commit": POOL_COMMIT,
        "pool_cpu_seconds_median": round(median(cpus["pool"]), 2),
        "cluster_client_cpu_seconds_median": round(median(cpus["cluster"]), 2),
        "pool_seconds_median": round(median(times["pool"]), 2), "pool_seconds": [round(s, 2) for s in times["pool"]],
        "pool_peak_mib_median": round(median(peaks["pool"])),
        "ours_over_pool": round(median(times["ours"]) / median(times["pool"]), 3),
        # Each round's ratio: the two ran a minute apart, under the same load.
        "ours_over_pool_paired_median": round(median([o / p for o, p in zip(times["ours"], times["pool"])]), 3),
        "cluster_seconds_median": round(median(times["cluster"]), 2),
        "cluster_seconds": [round(s, 2) for s in times["cluster"]],
        "cluster_over_ours": round(median(times["cluster"]) / median(times["ours"]), 3),
        "cluster_over_ours_paired_median": round(median([c / o for c, o in zip(times["cluster"], times["ours"])]), 3),
        "same_bytes_ours_pool": same_bytes(work / "ours-0", work / "pool-0"),
        "same_bytes_cluster_ours": same_bytes(work / "cluster-0", work / "ours-0"),
        "load_seconds_median": round(median(loads), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5, help="rounds of ours, the previous pool and the cluster")
    parser.add_argument("--original-runs", type=int, default=3, help="runs of the original method (0: skip it)")
    args = parser.parse_args()
    soundfont = SYSTEM_SOUNDFONTS[0]
    work = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    try:
        results = measure_generation(args, soundfont, work)
        parameters = pd.read_csv(work / "ours-0" / "parameters.csv")
        original = []
        for run in range(args.original_runs):
            scratch = work / f"original-{run}"
            scratch.mkdir()
            started = time.perf_counter()
            original_method(parameters, soundfont, scratch)
            original.append(time.perf_counter() - started)
            shutil.rmtree(scratch)
            print(f"original method run {run + 1}: {original[-1]:.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if original:
        results.update({"original_seconds_median": round(median(original), 2),
                        "original_seconds": [round(s, 2) for s in original],
                        "speedup": round(median(original) / results["ours_seconds_median"], 1)})
    write_results("generation", results)
    r = results
    print(f"\n| {args.count} clips | median wall | CPU (process tree) | peak memory (process tree) |\n|---|---|---|---|")
    print(f"| ours: Dask, local cluster, -j 2 | {r['ours_seconds_median']} s | {r['ours_cpu_seconds_median']} s "
          f"| {r['ours_peak_mib_median']} MiB |")
    print(f"| previous: home-made process pool ({POOL_COMMIT}), -j 2 | {r['pool_seconds_median']} s "
          f"| {r['pool_cpu_seconds_median']} s | {r['pool_peak_mib_median']} MiB |")
    print(f"| ours / previous: ratio of medians, median of each round's ratio | {r['ours_over_pool']}, "
          f"{r['ours_over_pool_paired_median']} | |")
    print(f"| ours on a loopback cluster (scheduler + 2 `dask worker`, TCP) | {r['cluster_seconds_median']} s | |")
    print(f"| cluster / local: ratio of medians, median of each round's ratio | {r['cluster_over_ours']}, "
          f"{r['cluster_over_ours_paired_median']} | |")
    print(f"| same bytes: local = previous, cluster = local | {r['same_bytes_ours_pool']}, "
          f"{r['same_bytes_cluster_ours']} | |")
    if original:
        print(f"| original (music21 + fluidsynth CLI) | {r['original_seconds_median']} s | |")
        print(f"| speed-up over the original | {r['speedup']}x | |")
    print(f"| load {args.count} FLAC clips (SingleToneDataset) | {r['load_seconds_median']} s | |")
    if not r["same_bytes_cluster_ours"]:
        raise SystemExit("bench_generation: the cluster's dataset differs from the local run's")


if __name__ == "__main__":
    main()

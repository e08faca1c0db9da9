#!/usr/bin/env python3
"""Benchmark: generating 2000 clips, ours against the original method, in the same run.

Ours: `generate_audio_samples.py -c 2000 -j 2` (in-process FluidSynth, fixed
shards on 2 workers, FLAC + MIDI written).
Original method: for each note, music21 writes the MIDI file, the `fluidsynth`
command-line program renders it in a subprocess and the audio is read back
(run 2 at a time, as fair to the 2 cores as ours).
Also: loading the 2000 FLAC clips with SingleToneDataset.

    python -m bench.bench_generation [--count 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from bench.common import median, python, run_measured, write_results
from instrument_classifier.dataset import SingleToneDataset
from instrument_classifier.synthesis import SYSTEM_SOUNDFONTS


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-runs", type=int, default=3)
    args = parser.parse_args()
    soundfont = SYSTEM_SOUNDFONTS[0]
    work = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    try:
        ours, peaks, loads = [], [], []
        for run in range(args.runs):
            out = work / f"ours-{run}"
            seconds, peak = run_measured([python(), "generate_audio_samples.py", "-c", str(args.count), "-s", "42",
                                          "-o", str(out), "-f", "flac", "-j", "2", "-q",
                                          "--soundfont", str(soundfont)])
            ours.append(seconds)
            peaks.append(peak)
            started = time.perf_counter()
            SingleToneDataset(out).samples
            loads.append(time.perf_counter() - started)
            print(f"ours run {run + 1}: {seconds:.2f} s, peak {peak:.0f} MiB, load {loads[-1]:.2f} s", flush=True)
            if run:
                shutil.rmtree(out)
        parameters = pd.read_csv(work / "ours-0" / "parameters.csv")
        baseline = []
        for run in range(args.baseline_runs):
            scratch = work / f"baseline-{run}"
            scratch.mkdir()
            started = time.perf_counter()
            original_method(parameters, soundfont, scratch)
            baseline.append(time.perf_counter() - started)
            shutil.rmtree(scratch)
            print(f"original method run {run + 1}: {baseline[-1]:.2f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "clips": args.count,
        "ours_seconds_median": round(median(ours), 2), "ours_seconds": [round(s, 2) for s in ours],
        "ours_peak_mib_median": round(median(peaks)),
        "original_seconds_median": round(median(baseline), 2), "original_seconds": [round(s, 2) for s in baseline],
        "speedup": round(median(baseline) / median(ours), 1),
        "load_seconds_median": round(median(loads), 2),
    }
    write_results("generation", results)
    print(f"\n| {args.count} clips, 2 jobs | median wall | peak memory |\n|---|---|---|")
    print(f"| ours (in-process FluidSynth) | {results['ours_seconds_median']} s | {results['ours_peak_mib_median']} MiB |")
    print(f"| original (music21 + fluidsynth CLI) | {results['original_seconds_median']} s | |")
    print(f"| speed-up | {results['speedup']}x | |")
    print(f"| load {args.count} FLAC clips (SingleToneDataset) | {results['load_seconds_median']} s | |")


if __name__ == "__main__":
    main()

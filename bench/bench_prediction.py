#!/usr/bin/env python3
"""Benchmark: classifying files, ours against the original method, in the same run.

1. Latency of one 2 s clip through the web API (waitress on loopback, a FLAC
   upload, warm), median of --requests; beside it the in-process
   ``Predictor.predict_file`` and the original per-clip path (read the first
   2 s, extract, ``model.predict``).
2. Throughput of ``predict.py`` over --files dataset clips (a subprocess,
   model loading included, and without it); beside it the original per-file
   loop (in-process, on the first 200 files).
3. Robustness: the model's test clips re-encoded as a user's files would be
   (louder stereo WAV, 48 kHz, 22.05 kHz OGG, 16 kHz and 8 kHz WAV, MP3, 3 s
   of silence first, peak normalised to -1 dBFS, 20 dB quieter): accuracy and agreement with the
   label of the original clip, ours and the original method (first 2 s at
   the file's own rate, never resampled).

    python -m bench.bench_prediction [-m MODEL_DIR] [--requests 100] [--files 2000] [--robustness-clips 500]

Writes bench/results/prediction.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from bench.common import REPO_DIR, python, run_measured, write_results
from instrument_classifier.cli import library_versions, positive_int
from instrument_classifier.leaderboard import default_model_dir
from instrument_classifier.audio import clip_window, read_audio
from instrument_classifier.prediction import Predictor

# The original method's per-file loop is slow: time it on this many files.
BASELINE_FILES = 200
# Test clips used for the robustness table (by default).
ROBUSTNESS_CLIPS = 500


def original_window(path: Path, clip_samples: int) -> np.ndarray:
    """The original's input: the first ``clip_samples`` frames at the file's own rate, channels averaged."""
    audio, _ = sf.read(path, frames=clip_samples, dtype="float32", always_2d=True)
    return clip_window(audio.mean(axis=1), 0, clip_samples)


def measure_api(predictor: Predictor, clips: list[Path], requests: int) -> dict:
    """Median latency of POST /api/classify/instrument (warm) and of the in-process paths, in ms."""
    import http.client
    import uuid

    from instrument_classifier.webapp import create_app, make_server

    server = make_server(create_app(predictor), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    bodies = []
    for path in clips:
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="audio_file"; filename="{path.name}"\r\n'
                f"Content-Type: audio/flac\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        bodies.append((body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))

    def post(i: int) -> float:
        body, headers = bodies[i % len(bodies)]
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=60)
        connection.request("POST", "/api/classify/instrument", body, headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        return time.perf_counter() - started

    try:
        for i in range(5):
            post(i)  # warm-up
        api = [post(i) for i in range(requests)]
    finally:
        server.close()
        thread.join(timeout=10)

    in_process = []
    for i in range(requests):
        started = time.perf_counter()
        predictor.predict_file(clips[i % len(clips)])
        in_process.append(time.perf_counter() - started)

    original = []
    model = predictor.bundle.model
    for i in range(min(requests, 30)):
        started = time.perf_counter()
        window = original_window(clips[i % len(clips)], predictor.clip_samples)
        x = predictor.bundle.to_model_input(predictor.extractor.transform(window[None], jobs=1))
        model.predict(x, verbose=0)
        original.append(time.perf_counter() - started)
    ms = lambda values: round(1000 * statistics.median(values), 2)  # noqa: E731
    return {"requests": requests, "api_median_ms": ms(api), "api_p90_ms": round(1000 * np.percentile(api, 90), 2),
            "in_process_median_ms": ms(in_process), "original_per_clip_median_ms": ms(original)}


def measure_cli(model_dir: Path, files: list[Path], predictor: Predictor) -> dict:
    """predict.py over ``files`` (wall time, peak memory), its start-up alone, and the original loop."""
    command = [python(), str(REPO_DIR / "predict.py"), "-m", str(model_dir)]
    startup, _ = run_measured(command + [str(files[0])])
    wall, peak_mib = run_measured(command + [str(f) for f in files])
    baseline = files[:BASELINE_FILES]
    started = time.perf_counter()
    for path in baseline:
        window = original_window(path, predictor.clip_samples)
        x = predictor.bundle.to_model_input(predictor.extractor.transform(window[None], jobs=1))
        predictor.bundle.model.predict(x, verbose=0)
    original_seconds = time.perf_counter() - started
    return {"files": len(files), "wall_seconds": round(wall, 2), "startup_seconds": round(startup, 2),
            "files_per_second": round(len(files) / wall, 1),
            "files_per_second_after_startup": round((len(files) - 1) / max(wall - startup, 1e-9), 1),
            "peak_rss_mib": round(peak_mib), "original_files": len(baseline),
            "original_files_per_second": round(len(baseline) / original_seconds, 1)}


def variants(clip: np.ndarray, rate: int) -> dict[str, tuple[np.ndarray, int, str, str]]:
    """name -> (audio, rate, file suffix, libsndfile subtype) of one clip re-encoded as a user's file."""
    peak = float(np.abs(clip).max()) or 1.0
    out = {
        "as is (FLAC)": (clip, rate, ".flac", "PCM_16"),
        "stereo WAV, +6 dB": (np.stack([clip, clip], axis=1) * 2.0, rate, ".wav", "PCM_16"),
        "48 kHz WAV": (soxr.resample(clip, rate, 48_000), 48_000, ".wav", "PCM_24"),
        "22.05 kHz OGG": (soxr.resample(clip, rate, 22_050), 22_050, ".ogg", "VORBIS"),
        "16 kHz WAV": (soxr.resample(clip, rate, 16_000), 16_000, ".wav", "PCM_16"),
        "8 kHz WAV (telephone band)": (soxr.resample(clip, rate, 8_000), 8_000, ".wav", "PCM_16"),
        "3 s silence first": (np.concatenate([np.zeros(3 * rate, np.float32), clip]), rate, ".flac", "PCM_16"),
        "peak -1 dBFS": (clip * (10 ** (-1 / 20) / peak), rate, ".wav", "FLOAT"),
        "20 dB quieter": (clip * 0.1, rate, ".wav", "FLOAT"),
    }
    if "MP3" in sf.available_formats():
        out["MP3"] = (clip, rate, ".mp3", "MPEG_LAYER_III")
    return out


def measure_robustness(predictor: Predictor, clips: list[tuple[Path, str]]) -> list[dict]:
    """Accuracy and agreement with the as-is label for every variant, ours and the original method."""
    rows: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (path, _) in enumerate(clips):
            clip, rate = read_audio(path)
            for number, (name, (audio, file_rate, suffix, subtype)) in enumerate(variants(clip[:, 0], rate).items()):
                target = Path(tmp) / f"{index:04d}-{number}{suffix}"
                sf.write(target, audio, file_rate, subtype=subtype)
                rows.setdefault(name, {"paths": []})["paths"].append(target)
        truth = [label for _, label in clips]
        results, as_is = [], {}
        for name, row in rows.items():
            ours = [result.label for _, result in predictor.predict_files(row["paths"])]
            windows = np.stack([original_window(p, predictor.clip_samples) for p in row["paths"]])
            _, proba = predictor._run_network(windows, jobs=None)
            original = [predictor.class_names[i] for i in proba.argmax(axis=1)]
            if not as_is:
                as_is = {"ours": ours, "original": original}
            results.append({
                "variant": name,
                "accuracy": round(float(np.mean(np.array(ours) == truth)), 4),
                "agreement": round(float(np.mean(np.array(ours) == as_is["ours"])), 4),
                "original_accuracy": round(float(np.mean(np.array(original) == truth)), 4),
                "original_agreement": round(float(np.mean(np.array(original) == as_is["original"])), 4),
            })
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model-dir", default=None,
                        help="model folder (default: the best model of the default dataset)")
    parser.add_argument("--requests", type=int, default=100, help="timed API requests")
    parser.add_argument("--files", type=int, default=2000, help="files for predict.py")
    parser.add_argument("--robustness-clips", type=positive_int, default=ROBUSTNESS_CLIPS,
                        help="test clips re-encoded for the robustness table")
    args = parser.parse_args(argv)

    model_dir = default_model_dir(args.model_dir).resolve()
    predictor = Predictor(model_dir)
    dataset = Path(predictor.bundle.config["dataset"])
    predictions = pd.read_csv(model_dir / "predictions.csv")
    test = predictions[predictions["split"] == "test"].head(args.robustness_clips)
    test_clips = [(dataset / f, str(label)) for f, label in zip(test["audio_file"], test["true"])]
    files = sorted((dataset / "audio").glob("*.flac"))[:args.files]

    api = measure_api(predictor, [path for path, _ in test_clips[:20]], args.requests)
    cli = measure_cli(model_dir, files, predictor)
    robustness = measure_robustness(predictor, test_clips)
    results = {
        "model_id": predictor.model_id, "arch": predictor.bundle.config.get("arch"),
        "api": api, "cli": cli, "robustness": {"clips": len(test_clips), "variants": robustness},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": library_versions("numpy", "soundfile", "soxr", "keras", "tensorflow-cpu", "flask", "waitress"),
    }
    path = write_results("prediction", results)

    print(f"## Prediction ({predictor.model_id}, {os.cpu_count()} CPUs)\n")
    print("| measure | ours | original method |")
    print("|---|---|---|")
    print(f"| one 2 s clip through POST /api/classify/instrument, median of {api['requests']} (ms) "
          f"| {api['api_median_ms']} (p90 {api['api_p90_ms']}) | – |")
    print(f"| one clip in-process, read to label (ms) | {api['in_process_median_ms']} "
          f"| {api['original_per_clip_median_ms']} (model.predict per clip) |")
    print(f"| predict.py over {cli['files']} files (s, incl. {cli['startup_seconds']} s start-up) "
          f"| {cli['wall_seconds']} | – |")
    print(f"| files per second (after start-up) | {cli['files_per_second']} "
          f"({cli['files_per_second_after_startup']}) | {cli['original_files_per_second']} "
          f"(per-file loop, {cli['original_files']} files) |")
    print(f"| predict.py peak memory (MiB) | {cli['peak_rss_mib']} | – |")
    print(f"\n## The same {len(test_clips)} test clips as a user's files\n")
    print("| file | accuracy | same label as as-is | original: accuracy | original: same label |")
    print("|---|---|---|---|---|")
    for row in robustness:
        print(f"| {row['variant']} | {row['accuracy']:.1%} | {row['agreement']:.1%} "
              f"| {row['original_accuracy']:.1%} | {row['original_agreement']:.1%} |")
    print(f"\nwrote {path.relative_to(REPO_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 2, the work: every clip of a dataset into one chromagram, in shards, on this machine or a Dask cluster.

:func:`extract_dataset` writes the store that :mod:`feature_store` describes
and reads back.  The layout is chosen by size (:func:`choose_layout`):
chunked when the chromagrams would take more than
:data:`IN_MEMORY_LIMIT_BYTES`, else the one npz file; ``layout=`` forces one.
Clips are decoded and transformed in shards of :data:`READ_CHUNK`
(:func:`extract_shard`, scheduled by :func:`extract_shards`); in the chunked
layout each shard is written as soon as it is done, so memory stays flat
whatever the size.  Nothing is extracted again while the store's fingerprint
(of parameters.csv, each clip's name, size and time, the extractor) holds.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from .chunked_array import ChunkedArray, ChunkWriter, file_sha256, index_sha256, open_chunked
from .cli import UserError, atomic_dir, atomic_path, library_versions, warn, write_json
from .dataset import PARAMETERS_CSV, SingleToneDataset, read_clips, stale_renders
from .defaults import CLIP_SAMPLES
from .feature_store import (CHROMAGRAMS_DIR, CHROMAGRAMS_NPZ, FEATURES_DIR, FEATURES_JSON, PLOT_PNG, SAMPLE_ID_NPY,
                            load_features, recorded_fingerprint)
from .features import ALGORITHM_VERSION, ChromagramExtractor
from .plots import plot_examples
from .scheduling import WorkerRecord, check_jobs, dask_client, run_tasks, software_stack, worker_records

LAYOUTS = ("auto", "npz", "chunked")
# Above this many bytes of chromagrams (26,500 clips of 44 x 115 float32) the
# features are chunked: training would otherwise hold them about three times
# (the features, the scaled training split, the scaled input for predictions).
IN_MEMORY_LIMIT_BYTES = 512 * 2**20
# Clips decoded and transformed at a time, one shard (0.35 MB each), so that
# memory stays flat whatever the dataset size.
READ_CHUNK = 256


def choose_layout(n_clips: int, extractor: ChromagramExtractor, layout: str = "auto") -> str:
    """"npz" or "chunked": ``layout`` unless "auto", else chunked above :data:`IN_MEMORY_LIMIT_BYTES`."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown feature layout {layout!r} (choose from: {', '.join(LAYOUTS)})")
    if layout != "auto":
        return layout
    row_bytes = extractor.n_frames(CLIP_SAMPLES) * extractor.n_bins * np.dtype(np.float32).itemsize
    return "chunked" if n_clips * row_bytes > IN_MEMORY_LIMIT_BYTES else "npz"


def extract_dataset(dataset_dir: str | os.PathLike, *, overwrite: bool = False, jobs: int | None = None,
                    plot: bool = False, extractor: ChromagramExtractor | None = None,
                    quiet: bool = False, layout: str = "auto", scheduler: str | None = None) -> Path:
    """Write ``DATASET/features/`` (chromagrams.npz or chromagrams/, features.json, with ``plot`` a PNG).

    Skips the work when features.json holds the same fingerprint (of
    parameters.csv, each clip's name, size and mtime, the extractor's
    parameters and :data:`~features.ALGORITHM_VERSION`) and the features are
    intact (and of the ``layout`` asked, unless "auto"), unless ``overwrite``.
    Clips are decoded and transformed in shards (:func:`extract_shards`).  The
    npz is written atomically at the end; the chunked layout writes each shard
    as it is done into a hidden folder renamed when complete.  So a failed run
    (a missing, unreadable, wrong-rate or wrong-length clip) leaves no
    features that look finished.

    Parameters
    ----------
    dataset_dir : a dataset folder (``parameters.csv`` plus clips).
    overwrite : recompute even when the features are up to date.
    jobs : shards decoded and transformed at once on this machine (default: all cores).
    scheduler : run the shards on the Dask cluster there (``tcp://HOST:8786``), whose workers see the dataset.
    plot : also write ``chromagrams.png``, one example per family.
    extractor : the extractor to use (default: ``ChromagramExtractor()``).
    quiet : no progress bar and no status line.
    layout : "auto" (by size, :func:`choose_layout`), "npz" or "chunked".

    Returns
    -------
    Path of the features folder.
    """
    check_jobs(jobs, scheduler)
    dataset, extractor = _checked_inputs(dataset_dir, extractor)
    if stale := stale_renders(dataset.path):
        warn(stale)
    features_dir = dataset.path / FEATURES_DIR
    fingerprint = _fingerprint(dataset, extractor)
    chosen = choose_layout(len(dataset), extractor, layout)
    recorded, recorded_layout = recorded_fingerprint(features_dir)
    if not overwrite and recorded == fingerprint and layout in ("auto", recorded_layout):
        if plot and not (features_dir / PLOT_PNG).is_file():
            chromagrams, _, _ = load_features(dataset.path)
            plot_examples(chromagrams, dataset.parameters, extractor, features_dir / PLOT_PNG)
        if not quiet:
            print(f"features of {dataset.path} are up to date (use --overwrite to recompute)")
        return features_dir
    if not os.access(dataset.path, os.W_OK | os.X_OK) or (
            features_dir.exists() and not os.access(features_dir, os.W_OK | os.X_OK)):
        raise UserError(f"cannot write to {features_dir}")

    start = time.perf_counter()
    write = _write_npz if chosen == "npz" else _write_chunked
    chromagrams, seconds, hashes, workers = write(dataset, extractor, features_dir, jobs=jobs,
                                                  scheduler=scheduler, quiet=quiet)
    seconds["total"] = time.perf_counter() - start
    write_json(features_dir / FEATURES_JSON, _features_record(dataset, extractor, chromagrams, jobs=jobs,
                                                             fingerprint=fingerprint, seconds=seconds,
                                                             layout=chosen, hashes=hashes, scheduler=scheduler,
                                                             workers=workers))
    if plot:
        plot_examples(chromagrams, dataset.parameters, extractor, features_dir / PLOT_PNG)
    if not quiet:
        print(f"wrote {len(chromagrams)} chromagrams {chromagrams.shape[1:]} to {features_dir} "
              + ("(chunked) " if chosen == "chunked" else "")
              + f"in {seconds['total']:.1f} s ({seconds['decode']:.1f} s decoding)")
    return features_dir


def _write_npz(dataset: SingleToneDataset, extractor: ChromagramExtractor, features_dir: Path, *,
               jobs: int | None, scheduler: str | None, quiet: bool
               ) -> tuple[np.ndarray, dict[str, float], dict[str, str], list[dict]]:
    """Extract into memory, then write chromagrams.npz atomically; (chromagrams, seconds, hashes, workers)."""
    chromagrams, seconds, workers = extract_shards(_absolute(dataset.audio_paths), extractor, jobs=jobs,
                                                   scheduler=scheduler, quiet=quiet)
    _forget_features(features_dir)
    with atomic_path(features_dir / CHROMAGRAMS_NPZ) as tmp:
        np.savez(tmp, chromagrams=chromagrams, sample_id=_sample_ids(dataset.parameters["sample_id"]))
        hashes = {"chromagrams_sha256": file_sha256(tmp)}
    shutil.rmtree(features_dir / CHROMAGRAMS_DIR, ignore_errors=True)
    return chromagrams, seconds, hashes, workers


def _write_chunked(dataset: SingleToneDataset, extractor: ChromagramExtractor, features_dir: Path, *,
                   jobs: int | None, scheduler: str | None, quiet: bool
                   ) -> tuple[ChunkedArray, dict[str, float], dict[str, str], list[dict]]:
    """Extract shard by shard, each written at once into a hidden chromagrams/ renamed when complete.

    Returns (the chunked array, seconds, hashes, workers).  Memory holds the shards in flight.
    """
    sample_id = _sample_ids(dataset.parameters["sample_id"])
    with atomic_dir(features_dir / CHROMAGRAMS_DIR, overwrite=True) as tmp:
        out = ChunkWriter(tmp, row_shape=(extractor.n_frames(CLIP_SAMPLES), extractor.n_bins),
                          dtype=np.float32, n_rows=len(sample_id), chunk_rows=READ_CHUNK)
        _, seconds, workers = extract_shards(_absolute(dataset.audio_paths), extractor, jobs=jobs,
                                             scheduler=scheduler, quiet=quiet, out=out)
        out.close()
        np.save(tmp / SAMPLE_ID_NPY, sample_id, allow_pickle=False)
        hashes = {"chromagrams_sha256": index_sha256(tmp), "sample_id_sha256": file_sha256(tmp / SAMPLE_ID_NPY)}
        _forget_features(features_dir)
    (features_dir / CHROMAGRAMS_NPZ).unlink(missing_ok=True)
    return open_chunked(features_dir / CHROMAGRAMS_DIR, verify=False), seconds, hashes, workers


def _absolute(paths: list[Path]) -> list[Path]:
    """The clips as absolute paths: a cluster's workers do not share this process's working folder."""
    return [path.absolute() for path in paths]


def _forget_features(features_dir: Path) -> None:
    """Remove features.json (and the plot) before new features replace the old: it goes back last.

    Called once the new features are computed, so that a failed run leaves the
    old ones as they were, and an interrupted one no features that look finished.
    """
    (features_dir / FEATURES_JSON).unlink(missing_ok=True)
    (features_dir / PLOT_PNG).unlink(missing_ok=True)


def extract_shards(paths: list[Path], extractor: ChromagramExtractor, *, jobs: int | None = None,
                   scheduler: str | None = None, quiet: bool = False, out=None
                   ) -> tuple[Any, dict[str, float], list[dict]]:
    """Chromagrams of every clip, one Dask task per shard (:data:`READ_CHUNK` clips), with a progress bar.

    The shards run as tasks of ``jobs`` threads in this process (default: all
    cores; the transform's FFTs release Python's lock, and nothing is copied
    between processes), or on the Dask cluster at ``scheduler``, whose workers
    must see ``paths``.  Each shard is stored with ``out[first:first + n] =
    shard`` as soon as it is back, in whatever order they finish: ``out`` is an
    array (default: a new ndarray) or a :class:`chunked_array.ChunkWriter`,
    which writes it to disk at once.

    Returns
    -------
    chromagrams : ``out`` [shape=(len(paths), n_frames, n_bins), dtype=float32], in ``paths`` order
    seconds : {"decode", "transform"}, summed over the shards
    workers : the run record's list of the workers that ran the shards (:func:`scheduling.worker_records`)
    """
    chromagrams = out if out is not None else np.empty(
        (len(paths), extractor.n_frames(CLIP_SAMPLES), extractor.n_bins), dtype=np.float32)
    seconds = {"decode": 0.0, "transform": 0.0}
    workers: list[WorkerRecord] = []
    shards = [(first, paths[first:first + READ_CHUNK], extractor) for first in range(0, len(paths), READ_CHUNK)]
    with tqdm(total=len(paths), unit="clip", desc="chromagrams", disable=True if quiet else None) as bar:
        def store(worker: WorkerRecord, result: tuple[int, np.ndarray, float, float]) -> None:
            first, shard, decode, transform = result
            chromagrams[first:first + len(shard)] = shard
            seconds["decode"] += decode
            seconds["transform"] += transform
            workers.append(worker)
            bar.update(len(shard))

        threads = max(1, min(jobs or os.cpu_count() or 1, len(shards)))
        with dask_client(scheduler, workers=1, threads=threads, announce=not quiet) as client:
            run_tasks(client, _shard_task, shards, store)
    return chromagrams, seconds, worker_records(workers)


def _shard_task(first: int, paths: list[Path], extractor: ChromagramExtractor
                ) -> tuple[int, np.ndarray, float, float]:
    """A Dask task: :func:`extract_shard` of one shard, on one thread; (first row, its chromagrams, seconds)."""
    return (first, *extract_shard(paths, extractor, jobs=1))


def extract_shard(paths: list[Path], extractor: ChromagramExtractor, *, jobs: int | None = None
                  ) -> tuple[np.ndarray, float, float]:
    """Decode and transform one shard of clips.

    Returns
    -------
    chromagrams : np.ndarray [shape=(len(paths), n_frames, n_bins), dtype=float32]
    decode_seconds, transform_seconds : float

    Raises UserError for a clip that cannot be read or has the wrong rate or length.
    """
    tick = time.perf_counter()
    clips = read_clips(paths, sample_rate=extractor.sample_rate, jobs=jobs)
    decoded = time.perf_counter()
    chromagrams = extractor.transform(clips, jobs=jobs)
    return chromagrams, decoded - tick, time.perf_counter() - decoded


def _checked_inputs(dataset_dir: str | os.PathLike, extractor: ChromagramExtractor | None
                    ) -> tuple[SingleToneDataset, ChromagramExtractor]:
    """The dataset and the extractor (default: ``ChromagramExtractor()``); UserError for what cannot work."""
    dataset = SingleToneDataset(dataset_dir)
    if len(dataset) == 0:
        raise UserError(f"{dataset.path / PARAMETERS_CSV} lists no clips")
    extractor = extractor or ChromagramExtractor()
    try:
        extractor.check_params()
    except ValueError as error:
        raise UserError(f"bad feature parameters: {error}") from None
    return dataset, extractor


def _features_record(dataset: SingleToneDataset, extractor: ChromagramExtractor, chromagrams, *,
                     jobs: int | None, fingerprint: str, seconds: dict[str, float], layout: str,
                     hashes: dict[str, str], scheduler: str | None, workers: list[dict]) -> dict:
    """features.json: what was extracted, how (where: the Dask workers), from what, and how long it took.

    ``hashes``: chromagrams_sha256 (of the npz, or of the chunked index, which
    holds every chunk's sha256), and for the chunked layout sample_id_sha256.
    """
    return {
        "dataset": str(dataset.path),
        "layout": layout,
        "n_clips": len(chromagrams),
        "shape": list(chromagrams.shape),
        "extractor": type(extractor).__name__,
        "params": extractor.get_params(),
        "first_bin_midi": float(extractor.bin_pitches()[0]),
        "frame_seconds": [round(float(t), 6) for t in extractor.frame_times(CLIP_SAMPLES)[[0, -1]]],
        "algorithm_version": ALGORITHM_VERSION,
        "fingerprint": fingerprint,
        "parameters_csv_sha256": file_sha256(dataset.path / PARAMETERS_CSV),
        **hashes,
        "jobs": None if scheduler else jobs or os.cpu_count(),
        "scheduler": scheduler or "local",
        "workers": workers,
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {**software_stack(), **library_versions("dask", "distributed")},
    }


def _sample_ids(values: pd.Series) -> np.ndarray:
    """sample_id as an array np.load can read without pickle (numbers or fixed-width text)."""
    array = values.to_numpy()
    return array if array.dtype.kind in "iub" else array.astype(str)


def _fingerprint(dataset: SingleToneDataset, extractor: ChromagramExtractor) -> str:
    """Hash of everything the features depend on; raises UserError for a missing clip."""
    digest = hashlib.sha256()
    digest.update((dataset.path / PARAMETERS_CSV).read_bytes())
    digest.update(json.dumps({"params": extractor.get_params(), "algorithm_version": ALGORITHM_VERSION,
                              "clip_samples": CLIP_SAMPLES}, sort_keys=True).encode())
    for path in dataset.audio_paths:
        try:
            stat = path.stat()
        except OSError as error:
            raise UserError(f"cannot read audio clip {path}: {error.strerror}") from None
        if not S_ISREG(stat.st_mode):  # opening a FIFO would wait for a writer, past Ctrl-C
            raise UserError(f"audio clip {path} is " + ("a folder" if S_ISDIR(stat.st_mode) else
                                                         "not a regular file (a pipe or a device?)"))
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()

"""Generate a dataset of random single-note clips rendered by FluidSynth (or our own synthesiser, :mod:`additive`).

Each clip: an instrument drawn uniformly from the selection, a pitch uniform
in its playable range (``instruments.csv``), a volume (velocity = round(127 *
volume)), the note on at t = 0, in a 2.0 s clip of 44.1 kHz mono audio, then
the clip's :class:`~instrument_classifier.variation.Variation`: note length,
expression, room, microphone, noise and codec, drawn from the recipe
(``--variation``; ``none`` gives the seed's clean clips: volume 0.5-1.0, the
note held 1.0 s, dry).

Same seed, same bytes, for any number of jobs:

* every clip draws its note from its own generator, seeded by
  ``(seed, sample_id)``, its variation from a second one,
  ``(seed, sample_id, 1)``, its noise from a third, ``(seed, sample_id, 2)``,
  and our synthesiser's bank (one of its timbres) from a fourth,
  ``(seed, sample_id, 3)``; a note that the SoundFont leaves silent is
  redrawn from the first (and counted), so no draw depends on scheduling,
  and the notes of a dataset do not depend on its variation recipe;
* clips are rendered in fixed shards of :data:`SHARD_SIZE` consecutive ids,
  each shard on a fresh synth; the renderer settles the synth before every
  note (:mod:`instrument_classifier.synthesis`, *Determinism*), so neither a
  worker's history nor the clips before it reach a clip's audio;
* with several SoundFonts, clip ``i`` uses font ``i mod n_fonts``.

A shard is one Dask task (:mod:`instrument_classifier.scheduling`): on this
machine's cores by default, or on a Dask cluster (``scheduler``), the same
tasks either way.  A worker keeps each SoundFont loaded for its next shards.
The dataset is built in a hidden temporary folder beside the output, which
every worker must see, and renamed into place when every shard has
finished.  A shard whose worker died is run again from its start and
rewrites each of its files whole (the same bytes), so what a dead worker
half wrote never survives; once the run stops, the folder is gone and a
task still running elsewhere fails at its next file instead of writing on.
(Files are written in place, not under a temporary name then renamed:
that cost 5 % of the generation time here.)
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from .cli import UserError, atomic_dir, library_versions, warn, write_json
from .dataset import (CHROMAGRAMS_DIR, CHROMAGRAMS_NPZ, FEATURES_DIR, FEATURES_JSON, PARAMETERS_CSV, PLOT_PNG,
                      RENDERER_VERSION, RUN_RECORD, SPLITS_CSV, TRAINING_RECORD_JSON, soundfile_path)
from .defaults import CLIP_SECONDS, SAMPLE_RATE
from .midi_files import midi_file_bytes
from .model_files import is_model_dir
from .output_folders import check_output_dir
from .scheduling import WorkerRecord, check_jobs, dask_client, run_tasks, software_stack, worker_records
from .soundfonts import SoundFont
from .synthesis import Renderer
from .temporaries import is_temporary
from .additive import BANKS
from .recording import apply_recording_chain
from .variation import RECIPES, Recipe, Variation, note_events

# Clips rendered one after another on one fresh synth.  Bigger shards spread
# the ~40 ms of making a synth over more clips; smaller ones balance workers.
SHARD_SIZE = 100
# A clip whose peak stays below -60 dBFS counts as silent and is redrawn.
SILENCE_PEAK = 10 ** (-60 / 20)
# Give up on a clip after this many silent draws (a font missing the programs).
MAX_DRAWS = 20
FORMATS = {"flac": "PCM_16", "wav": "PCM_16"}
# The disk-space estimate, with a margin: 16-bit WAV, FLAC (0.48 bytes a sample measured on varied clips,
# 0.36 on clean ones), plus a clip's MIDI file, parameters.csv row and file-system blocks.
AUDIO_BYTES_PER_SAMPLE = {"wav": 2.0, "flac": 0.75}
BYTES_PER_CLIP_BESIDE_AUDIO = 16 * 1024
# Datasets estimated below this are not checked (pseudo file systems such as /proc report 0 bytes free).
SMALL_DATASET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides the clips of a dataset."""

    count: int
    seed: int
    audio_format: str
    soundfonts: tuple[SoundFont, ...]
    instruments: pd.DataFrame = field(compare=False, repr=False)
    recipe: Recipe = RECIPES["none"]
    sample_rate: int = SAMPLE_RATE
    clip_seconds: float = CLIP_SECONDS
    shard_size: int = SHARD_SIZE

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UserError(f"--count must be at least 1, got {self.count}")
        if self.shard_size < 1:
            raise UserError(f"the shard size must be at least 1, got {self.shard_size}")
        if self.audio_format not in FORMATS:
            raise UserError(f"unknown audio format {self.audio_format!r} (choose from {', '.join(FORMATS)})")
        if not self.soundfonts:
            raise UserError("no SoundFont given")
        if len(self.instruments) == 0:
            raise UserError("no instrument selected")


def draw_note(rng: np.random.Generator, instruments: pd.DataFrame, volume_range: tuple[float, float]) -> dict:
    """Draw one note's instrument, pitch and volume."""
    row = instruments.iloc[int(rng.integers(len(instruments)))]
    pitch = int(rng.integers(int(row.min_pitch), int(row.max_pitch) + 1))
    volume = float(rng.uniform(*volume_range))
    return {
        "instrument_id": int(row.id),
        "midi_program": int(row.id) - 1,
        "instrument_name": row["name"],
        "family_name": row.family_name,
        "midi_number": pitch,
        "volume": round(volume, 6),
        "velocity": int(round(127 * volume)),
    }


# Per-worker state: one live synth per SoundFont keeps its samples in FluidSynth's cache,
# so a fresh synth for the next shard costs ~40 ms instead of a load (up to 6 s for an .sf3).
_font_holders: dict[Path, Renderer] = {}
_font_holders_lock = threading.Lock()  # a cluster's worker may run several tasks at once, in threads


def _fresh_renderer(font: SoundFont, sample_rate: int):
    if font.builtin:
        return font.renderer(sample_rate)
    _hold(font, sample_rate)
    return Renderer(font.path, sample_rate=sample_rate)


def _hold(font: SoundFont, sample_rate: int) -> None:
    with _font_holders_lock:
        if font.path not in _font_holders:
            _font_holders[font.path] = Renderer(font.path, sample_rate=sample_rate)


def load_soundfonts(settings: GenerationSettings) -> None:
    """Load the SoundFonts into this process's cache, once: this machine's workers, forked after it, share them.

    FluidSynth loads in C without Python's lock, so this runs in a thread
    while Dask starts; a load that fails here fails again, reported, in a task.
    """
    for font in settings.soundfonts:
        if not font.builtin:
            try:
                _hold(font, settings.sample_rate)
            except Exception:  # reported by the first task that needs the font; the others still load here
                continue


def is_silent(dry: np.ndarray) -> bool:
    """Whether a note rendered dry peaks under :data:`SILENCE_PEAK`: the font has no sound for it."""
    return not len(dry) or float(np.abs(dry).max()) < SILENCE_PEAK


def render_clip(renderer, *, program: int, pitch: int, velocity: int, variation: Variation, clip_seconds: float,
                bank: int = 0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, list]:
    """One note with its variation: (the clip, the dry render, the MIDI events).

    ``renderer`` is a FluidSynth :class:`~instrument_classifier.synthesis.Renderer` or our
    :class:`~instrument_classifier.additive.AdditiveRenderer` (``bank`` picks its instrument).
    The dry render (synthesiser output before the recording chain) tells
    whether the font left the note silent; ``rng`` draws the noise.
    """
    events = note_events(program=program, pitch=pitch, velocity=velocity, variation=variation,
                         sample_rate=renderer.sample_rate, clip_seconds=clip_seconds, bank=bank)
    dry = renderer.render_events(events, round(clip_seconds * renderer.sample_rate))
    if variation.is_clean:
        return dry, dry, events
    rng = rng if rng is not None else np.random.default_rng(0)
    return apply_recording_chain(dry, variation, renderer.sample_rate, rng), dry, events


def chain_rng(seed: int, sample_id: int) -> np.random.Generator:
    """The generator of clip ``sample_id``'s recording chain (its noise) in a dataset of ``seed``."""
    return np.random.default_rng([seed, sample_id, 2])


def render_note(font: SoundFont, *, program: int, pitch: int, velocity: int, variation: Variation,
                clip_seconds: float = CLIP_SECONDS, bank: int = 0, seed: int = 0, sample_id: int = 0
                ) -> tuple[np.ndarray, np.ndarray, list]:
    """One note exactly as asked, on a fresh synth of ``font``: (the clip, the dry render, the MIDI events).

    With a dataset's ``seed`` and a clip's ``sample_id``, and the settings of
    its row, that clip, byte for byte (the synth is settled before every
    note, :mod:`synthesis`).  UserError when the font has no preset
    ``program`` in ``bank``.
    """
    with font.renderer(SAMPLE_RATE) as renderer:
        if not font.builtin and not renderer.has_preset(program, bank):
            raise UserError(f"{font.name} has no preset {program} in bank {bank}")
        return render_clip(renderer, program=program, pitch=pitch, velocity=velocity, variation=variation,
                           clip_seconds=clip_seconds, bank=bank, rng=chain_rng(seed, sample_id))


def render_shard(settings: GenerationSettings, sample_ids: range, out_dir: Path) -> list[dict]:
    """Render and write the clips ``sample_ids`` on fresh synths; return their parameter rows."""
    renderers: dict[str, Renderer] = {}
    rows = []
    try:
        for sample_id in sample_ids:
            font = settings.soundfonts[sample_id % len(settings.soundfonts)]
            if font.name not in renderers:
                renderers[font.name] = _fresh_renderer(font, settings.sample_rate)
            # Our synthesiser plays a new random instrument in every bank; a SoundFont's GM bank is 0.
            bank = int(np.random.default_rng([settings.seed, sample_id, 3]).integers(1, BANKS)) if font.builtin else 0
            rng = np.random.default_rng([settings.seed, sample_id])
            variation = settings.recipe.draw(np.random.default_rng([settings.seed, sample_id, 1]),
                                             note_seconds_max=settings.clip_seconds)
            for draws in range(1, MAX_DRAWS + 1):
                note = draw_note(rng, settings.instruments, settings.recipe.volume)
                audio, dry, events = render_clip(
                    renderers[font.name], program=note["midi_program"], pitch=note["midi_number"],
                    velocity=note["velocity"], variation=variation, clip_seconds=settings.clip_seconds, bank=bank,
                    rng=chain_rng(settings.seed, sample_id))
                if not is_silent(dry):
                    break
            else:
                raise UserError(f"SoundFont {font.name} left {MAX_DRAWS} draws for clip {sample_id} silent")
            name = f"sample_{sample_id:06d}"
            audio_file = f"audio/{name}.{settings.audio_format}"
            midi_file = f"midi/{name}.mid"
            clipped = bool(np.abs(audio).max() > 1.0)
            audio = np.clip(audio, -1.0, 1.0)
            sf.write(soundfile_path(out_dir / audio_file), audio, settings.sample_rate,
                     subtype=FORMATS[settings.audio_format], format=settings.audio_format.upper())
            (out_dir / midi_file).write_bytes(midi_file_bytes(events, settings.sample_rate))
            peak = float(np.abs(audio).max())
            rows.append({"sample_id": sample_id, **note, **variation.columns(),
                         "soundfont": font.name, "lineage": font.lineage, "bank": bank,
                         "peak_dbfs": round(20 * np.log10(max(peak, 1e-10)), 2),
                         "redraws": draws - 1, "audio_file": audio_file, "midi_file": midi_file,
                         "_clipped": clipped})  # for the warning, not a column
    finally:
        for renderer in renderers.values():
            renderer.close()
    return rows


def worker_problem(out_dir: Path, soundfonts: tuple[SoundFont, ...]) -> str | None:
    """Run on each worker before the work: what stops it rendering into ``out_dir`` (``None``: nothing)."""
    for font in soundfonts:
        if not font.builtin and not Path(font.path).is_file():
            return f"has no SoundFont {font.path}"
    probe = out_dir / "audio" / f".probe-{uuid.uuid4().hex[:12]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return (f"cannot write to {out_dir}: {error.strerror or error} "
                "(the output folder must be on a file system every worker sees)")
    return None


# What the pipeline writes in a dataset folder, for --overwrite to tell it from a user's files: (name pattern,
# None for a file or the spec of a folder's contents).  The generator's clips and MIDI files (and the probe of
# a worker's access to audio/, if a killed run left it), the features (in either layout), and training data,
# under any folder name (prepare_training.py -o).  An atomic write's temporary may lie anywhere.
_CLIPS = ((r"sample_\d{6,}\.[a-z0-9]+", None), (r"\.probe-[0-9a-f]{12}", None))
_FEATURES = ((re.escape(FEATURES_JSON), None), (re.escape(CHROMAGRAMS_NPZ), None), (re.escape(PLOT_PNG), None),
             (re.escape(CHROMAGRAMS_DIR), ((r"[\w-]+\.(npy|json)", None),)))
_TRAINING_DATA = ((re.escape(SPLITS_CSV), None), (re.escape(TRAINING_RECORD_JSON), None))
DATASET_FOLDER = ((re.escape(PARAMETERS_CSV), None), (re.escape(RUN_RECORD), None), ("audio", _CLIPS),
                  ("midi", _CLIPS), (re.escape(FEATURES_DIR), _FEATURES), (r"[^.].*", _TRAINING_DATA))


def foreign_contents(dataset_dir: Path) -> str | None:
    """What ``--overwrite`` would delete in ``dataset_dir`` beyond an earlier run of the pipeline, or None.

    A trained model (:func:`trained_models`: it cost more than the clips), or
    the first file or folder that is not where the pipeline writes one
    (:data:`DATASET_FOLDER`): a user's notes, a dataset inside audio/, a
    hidden folder of theirs (.git), a report kept in the dataset.
    """
    kept = trained_models(dataset_dir)
    if kept:
        return kept
    stray = _stray(dataset_dir, DATASET_FOLDER)
    if stray is None:
        return None
    return f"{stray.relative_to(dataset_dir)}{'/' if stray.is_dir() else ''} (not one of the pipeline's files)"


def _stray(folder: Path, spec: tuple) -> Path | None:
    """The first entry of ``folder`` (depth first) that ``spec`` does not allow, or None."""
    for entry in sorted(folder.iterdir()):
        if is_temporary(entry.name):
            continue
        inner = next((inner for pattern, inner in spec if re.fullmatch(pattern, entry.name)), ())
        if inner == () or entry.is_symlink() or (entry.is_dir() if inner is None else not entry.is_dir()):
            return entry
        if inner is not None and (found := _stray(entry, inner)) is not None:
            return found
    return None


def trained_models(dataset_dir: Path) -> str | None:
    """The first model folder in ``dataset_dir`` (``models/<id>/``, or another ``--models-dir`` there), or None."""
    for folder in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
        for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
            if is_model_dir(candidate):
                return f"the trained model {candidate.relative_to(dataset_dir)}/"
    return None


def check_disk_space(settings: GenerationSettings, output_dir: Path) -> None:
    """Refuse, before any work, a dataset that would not fit on the output's disk (estimated generously)."""
    per_clip = (AUDIO_BYTES_PER_SAMPLE[settings.audio_format] * round(settings.clip_seconds * settings.sample_rate)
                + BYTES_PER_CLIP_BESIDE_AUDIO)
    needed = settings.count * per_clip
    parent = next((p for p in [output_dir, *output_dir.parents] if p.exists()), Path("."))
    free = shutil.disk_usage(parent).free
    if needed > max(free, SMALL_DATASET_BYTES):  # a small one that does not fit fails on its first write, cleanly
        raise UserError(f"{settings.count:,} clips need about {needed / 1e9:,.1f} GB ({per_clip / 1000:.0f} kB a "
                        f"clip); {parent} has {free / 1e9:,.1f} GB free")


def generate_dataset(settings: GenerationSettings, output_dir: str | os.PathLike, *, jobs: int | None = None,
                     scheduler: str | None = None, overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Render ``settings.count`` clips into ``output_dir``; return ``parameters.csv`` as a DataFrame.

    ``output_dir`` gets ``parameters.csv``, ``audio/``, ``midi/`` and
    ``generation.json``; it appears only once complete.  The shards run on
    ``jobs`` worker processes of this machine (default: all cores), or on the
    Dask cluster whose scheduler is at ``scheduler`` (``tcp://HOST:8786``),
    whose workers must all see ``output_dir``.
    """
    check_jobs(jobs, scheduler)
    # --overwrite replaces an earlier dataset (its features and splits go with its clips), never trained models
    # or anything else the pipeline did not write there.
    output_dir = check_output_dir(output_dir, overwrite=overwrite, marker=RUN_RECORD,
                                  protected=foreign_contents).absolute()
    check_disk_space(settings, output_dir)
    shards = [range(start, min(start + settings.shard_size, settings.count))
              for start in range(0, settings.count, settings.shard_size)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(shards)))
    started = time.perf_counter()
    try:
        return _generate(settings, output_dir, shards, jobs, scheduler, progress, started)
    except (OSError, sf.LibsndfileError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UserError(f"cannot write dataset {output_dir}: {reason}") from None


def _generate(settings: GenerationSettings, output_dir: Path, shards: list[range], jobs: int,
              scheduler: str | None, progress: bool, started: float) -> pd.DataFrame:
    with atomic_dir(output_dir, overwrite=True) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "midi").mkdir()
        rows: list[dict] = []
        workers: list[WorkerRecord] = []
        # Leaving this block stops the workers (a local cluster's processes) before atomic_dir cleans up.
        with dask_client(scheduler, workers=jobs, announce=progress,
                         warm_up=functools.partial(load_soundfonts, settings)) as client:
            _check_workers(client, tmp, settings)
            with tqdm(total=settings.count, unit="clip", desc="generating", disable=not progress) as bar:
                def collect(worker: WorkerRecord, shard_rows: list[dict]) -> None:
                    rows.extend(shard_rows)
                    workers.append(worker)
                    bar.update(len(shard_rows))

                try:
                    run_tasks(client, render_shard, [(settings, shard, tmp) for shard in shards], collect)
                except BaseException:
                    # Tasks still running (a cluster's, or a local worker's current shard) fail at their
                    # next file once its folder is gone, so the workers stop at once.
                    for folder in ("audio", "midi"):
                        shutil.rmtree(tmp / folder, ignore_errors=True)
                    raise
        parameters = pd.DataFrame(rows).sort_values("sample_id").reset_index(drop=True)
        clipped = parameters.pop("_clipped").astype(bool)
        if clipped.any():
            warn(f"{int(clipped.sum())} of {len(parameters)} clips went past full scale and were clipped "
                 f"(sample {int(parameters.loc[clipped, 'sample_id'].iloc[0])} first): the level, noise, "
                 "hum or room of their variation push them past 0 dBFS")
        parameters.to_csv(tmp / PARAMETERS_CSV, index=False)
        write_json(tmp / RUN_RECORD, _run_record(settings, parameters, scheduler, jobs, workers,
                                                 time.perf_counter() - started))
    return parameters


def _check_workers(client, tmp: Path, settings: GenerationSettings) -> None:
    """Refuse, before any work, workers that cannot see the output folder or lack a SoundFont."""
    problems = sorted((address, problem) for address, problem
                      in client.run(worker_problem, tmp, settings.soundfonts).items() if problem)
    if problems:
        address, problem = problems[0]
        others = f" (and {len(problems) - 1} more workers)" if len(problems) > 1 else ""
        raise UserError(f"Dask worker {address} {problem}{others}")


def _run_record(settings: GenerationSettings, parameters: pd.DataFrame, scheduler: str | None, jobs: int,
                workers: list[WorkerRecord], seconds: float) -> dict:
    return {
        "settings": {
            "count": settings.count, "seed": settings.seed, "format": settings.audio_format,
            "soundfonts": [{"name": f.name, "path": str(f.path), "lineage": f.lineage}
                           for f in settings.soundfonts],
            "instruments": settings.instruments["name"].tolist(),
            "sample_rate": settings.sample_rate, "clip_seconds": settings.clip_seconds,
            "variation": settings.recipe.to_json(),
            "shard_size": settings.shard_size, "silence_peak_dbfs": -60,
        },
        "renderer": RENDERER_VERSION,
        "scheduler": scheduler or "local",
        "jobs": None if scheduler else jobs,
        "workers": worker_records(workers),
        "counts": {
            "clips": len(parameters),
            "redraws": int(parameters["redraws"].sum()),
            "per_family": parameters["family_name"].value_counts().sort_index().to_dict(),
            "per_soundfont": parameters["soundfont"].value_counts().sort_index().to_dict(),
        },
        "seconds": round(seconds, 3),
        "versions": {**software_stack(), **library_versions("dask", "distributed")},
    }

"""Generate a dataset of random single-note clips rendered by FluidSynth.

Each clip: an instrument drawn uniformly from the selection, a pitch uniform
in its playable range (``instruments.csv``), a volume uniform in [0.5, 1.0]
(velocity = round(127 * volume)), the note on at t = 0 and held 1.0 s, in a
2.0 s clip of 44.1 kHz mono audio.

Same seed, same bytes, for any number of jobs:

* every clip draws its parameters from its own generator, seeded by
  ``(seed, sample_id)``; a note that the SoundFont leaves silent is redrawn
  from that same generator (and counted), so no draw depends on scheduling;
* clips are rendered in fixed shards of :data:`SHARD_SIZE` consecutive ids,
  each shard on a fresh synth (see :mod:`instrument_classifier.synthesis` for
  the state a synth carries between notes), so a worker's history never
  reaches the audio;
* with several SoundFonts, clip ``i`` uses font ``i mod n_fonts``.

The dataset is built in a hidden temporary folder beside the output and
renamed into place when complete.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from .cli import UserError, atomic_dir, check_output_dir, library_versions, write_json
from .dataset import PARAMETERS_CSV
from .defaults import CLIP_SECONDS, NOTE_SECONDS, SAMPLE_RATE
from .synthesis import Renderer, check_soundfont, default_soundfont

# Clips rendered one after another on one fresh synth.  Bigger shards spread
# the ~40 ms of making a synth over more clips; smaller ones balance workers.
SHARD_SIZE = 100
# A clip whose peak stays below -60 dBFS counts as silent and is redrawn.
SILENCE_PEAK = 10 ** (-60 / 20)
# Give up on a clip after this many silent draws (a font missing the programs).
MAX_DRAWS = 20
VOLUME_RANGE = (0.5, 1.0)
FORMATS = {"flac": "PCM_16", "wav": "PCM_16"}
RUN_RECORD = "generation.json"


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides the clips of a dataset."""

    count: int
    seed: int
    audio_format: str
    soundfonts: tuple[Path, ...]
    instruments: pd.DataFrame = field(compare=False, repr=False)
    sample_rate: int = SAMPLE_RATE
    note_seconds: float = NOTE_SECONDS
    clip_seconds: float = CLIP_SECONDS

    def __post_init__(self) -> None:
        if self.count < 1:
            raise UserError(f"--count must be at least 1, got {self.count}")
        if self.audio_format not in FORMATS:
            raise UserError(f"unknown audio format {self.audio_format!r} (choose from {', '.join(FORMATS)})")
        if not self.soundfonts:
            raise UserError("no SoundFont given")
        if len(self.instruments) == 0:
            raise UserError("no instrument selected")


def draw_note(rng: np.random.Generator, instruments: pd.DataFrame) -> dict:
    """Draw one note's instrument, pitch and volume."""
    row = instruments.iloc[int(rng.integers(len(instruments)))]
    pitch = int(rng.integers(int(row.min_pitch), int(row.max_pitch) + 1))
    volume = float(rng.uniform(*VOLUME_RANGE))
    return {
        "instrument_id": int(row.id),
        "midi_program": int(row.id) - 1,
        "instrument_name": row["name"],
        "family_name": row.family_name,
        "midi_number": pitch,
        "volume": round(volume, 6),
        "velocity": int(round(127 * volume)),
    }


def _variable_length(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append((value & 0x7F) | 0x80)
    return bytes(reversed(out))


def one_note_midi(*, program: int, pitch: int, velocity: int, seconds: float, channel: int = 0,
                  ticks_per_beat: int = 480, tempo_us: int = 500_000) -> bytes:
    """A Standard MIDI File (format 0) playing one note from t = 0 for ``seconds``.

    Written directly (about 40 bytes); pretty_midi spent ~0.7 ms a file, 10 % of a clip's cost.
    """
    ticks = round(seconds * 1e6 / tempo_us * ticks_per_beat)
    events = b"".join([
        b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big"),          # set tempo
        bytes([0x00, 0xC0 | channel, program]),                     # program change
        bytes([0x00, 0x90 | channel, pitch, velocity]),             # note on at t = 0
        _variable_length(ticks) + bytes([0x80 | channel, pitch, 0]),  # note off
        b"\x00\xff\x2f\x00",                                        # end of track
    ])
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") \
        + ticks_per_beat.to_bytes(2, "big")
    return header + b"MTrk" + len(events).to_bytes(4, "big") + events


# Per-process state: one live synth per SoundFont keeps its samples cached.
_font_holders: dict[Path, Renderer] = {}


def _fresh_renderer(font: Path, sample_rate: int) -> Renderer:
    if font not in _font_holders:
        _font_holders[font] = Renderer(font, sample_rate=sample_rate)
    return Renderer(font, sample_rate=sample_rate)


def render_shard(settings: GenerationSettings, sample_ids: range, out_dir: Path) -> list[dict]:
    """Render and write the clips ``sample_ids`` on fresh synths; return their parameter rows."""
    renderers: dict[Path, Renderer] = {}
    rows = []
    try:
        for sample_id in sample_ids:
            font = settings.soundfonts[sample_id % len(settings.soundfonts)]
            if font not in renderers:
                renderers[font] = _fresh_renderer(font, settings.sample_rate)
            rng = np.random.default_rng([settings.seed, sample_id])
            for draws in range(1, MAX_DRAWS + 1):
                note = draw_note(rng, settings.instruments)
                audio = renderers[font].render_note(
                    program=note["midi_program"], pitch=note["midi_number"], velocity=note["velocity"],
                    note_seconds=settings.note_seconds, clip_seconds=settings.clip_seconds)
                peak = float(np.abs(audio).max())
                if peak >= SILENCE_PEAK:
                    break
            else:
                raise UserError(f"SoundFont {font} left {MAX_DRAWS} draws for clip {sample_id} silent")
            name = f"sample_{sample_id:06d}"
            audio_file = f"audio/{name}.{settings.audio_format}"
            midi_file = f"midi/{name}.mid"
            sf.write(out_dir / audio_file, np.clip(audio, -1.0, 1.0), settings.sample_rate,
                     subtype=FORMATS[settings.audio_format], format=settings.audio_format.upper())
            (out_dir / midi_file).write_bytes(one_note_midi(
                program=note["midi_program"], pitch=note["midi_number"], velocity=note["velocity"],
                seconds=settings.note_seconds))
            rows.append({"sample_id": sample_id, **note, "duration": settings.note_seconds,
                         "soundfont": font.name, "peak_dbfs": round(20 * np.log10(peak), 2),
                         "redraws": draws - 1, "audio_file": audio_file, "midi_file": midi_file})
    finally:
        for renderer in renderers.values():
            renderer.close()
    return rows


def _render_shard_task(task: tuple) -> list[dict]:
    return render_shard(*task)


def _worker_init() -> None:
    """Interrupts are the parent's business: it stops the pool and cleans up, quietly.

    A forked worker inherits the parent's SIGTERM handler (which raises) and
    gets Ctrl-C too; either would print a traceback per worker.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def generate_dataset(settings: GenerationSettings, output_dir: str | os.PathLike, *, jobs: int | None = None,
                     overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Render ``settings.count`` clips into ``output_dir``; return ``parameters.csv`` as a DataFrame.

    ``output_dir`` gets ``parameters.csv``, ``audio/``, ``midi/`` and
    ``generation.json``; it appears only once complete.
    """
    output_dir = check_output_dir(output_dir, overwrite=overwrite)
    if jobs is not None and jobs < 1:
        raise UserError("--jobs must be at least 1")
    jobs = max(1, min(jobs or os.cpu_count() or 1, -(-settings.count // SHARD_SIZE)))
    started = time.perf_counter()
    try:
        return _generate(settings, output_dir, jobs, progress, started)
    except (OSError, sf.LibsndfileError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UserError(f"cannot write dataset {output_dir}: {reason}") from None


def _generate(settings: GenerationSettings, output_dir: Path, jobs: int, progress: bool,
              started: float) -> pd.DataFrame:
    with atomic_dir(output_dir, overwrite=True) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "midi").mkdir()
        shards = [range(start, min(start + SHARD_SIZE, settings.count))
                  for start in range(0, settings.count, SHARD_SIZE)]
        tasks = [(settings, shard, tmp) for shard in shards]
        rows: list[dict] = []
        with tqdm(total=settings.count, unit="clip", desc="generating", disable=not progress) as bar:
            if jobs == 1:
                results = map(_render_shard_task, tasks)
                pool = None
            else:
                pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_init)
                results = pool.imap_unordered(_render_shard_task, tasks)
            try:
                for shard_rows in results:
                    rows.extend(shard_rows)
                    bar.update(len(shard_rows))
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
        parameters = pd.DataFrame(rows).sort_values("sample_id").reset_index(drop=True)
        parameters.to_csv(tmp / PARAMETERS_CSV, index=False)
        elapsed = time.perf_counter() - started
        write_json(tmp / RUN_RECORD, {
            "settings": {
                "count": settings.count, "seed": settings.seed, "format": settings.audio_format,
                "soundfonts": [str(f) for f in settings.soundfonts],
                "instruments": settings.instruments["name"].tolist(),
                "sample_rate": settings.sample_rate, "note_seconds": settings.note_seconds,
                "clip_seconds": settings.clip_seconds, "volume_range": VOLUME_RANGE,
                "shard_size": SHARD_SIZE, "silence_peak_dbfs": -60,
            },
            "jobs": jobs,
            "counts": {
                "clips": len(parameters),
                "redraws": int(parameters["redraws"].sum()),
                "per_family": parameters["family_name"].value_counts().sort_index().to_dict(),
            },
            "seconds": round(elapsed, 3),
            "versions": library_versions("numpy", "pyfluidsynth", "soundfile", "pretty_midi", "pandas"),
        })
    return parameters


def resolve_soundfonts(paths: list[str] | None) -> tuple[Path, ...]:
    """Check the given SoundFont paths, or fall back to the default SoundFont."""
    if not paths:
        return (default_soundfont(),)
    return tuple(check_soundfont(Path(p).expanduser()) for p in paths)

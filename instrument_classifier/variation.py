"""Variation the clean clips lack: how a note is played, where it sounds, how it is recorded.

A :class:`Recipe` holds ranges and probabilities; :meth:`Recipe.draw` turns
them into one :class:`Variation` of concrete values per clip, drawn from the
clip's own generator, so that the same seed gives the same clip for any
number of jobs.  Every value is a column of ``parameters.csv``: a clip can be
rendered again from its row alone (``render_note.py`` takes each as an option).

The stages, in signal order (2-6: :mod:`recording`):

1. **Expression**, as MIDI events that FluidSynth renders and the clip's MIDI
   file holds: velocity (the font's velocity layers and filter), note length,
   detune and vibrato (pitch wheel, range +-2 semitones, an event every
   :data:`PITCH_STEP_TICKS` ticks) and brightness (the SoundFont's own low-pass
   cutoff, offset through the SF2 NRPN, as a player's filter controller would).
2. **Room**: the impulse response of a shoebox room from pyroomacoustics'
   image-source model (reverberation time, room size, microphone distance),
   its direct path moved to t = 0, as the predictor aligns a file to its onset.
3. **Microphone and channel colour** (pedalboard): a high-pass and a
   low-pass (first order, 6 dB per octave), a low and a high shelf and one peak filter.
4. **Level**: the peak is set to ``level_dbfs``.
5. **Noise**: background noise (white, pink or brown) and mains hum
   (50 or 60 Hz and harmonics), at levels relative to the peak: real
   recordings fill the chromagram's range down to -120 dB, clean renders
   leave it empty.
6. **Codec**: MP3 (pedalboard's LAME) at a VBR quality.

The clip is then written as 16-bit audio.  ``Recipe.draw`` draws every value
whether its stage is on or off, in a fixed order, so that switching one stage
off (``--vary room_probability=0``) leaves every other value of every clip
as it was: an ablation changes one thing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cli import UserError
from .midi_files import NoteEvent

# The MIDI grid of the clips' files: 480 ticks per beat at 120 bpm, 960 ticks a second.
TICKS_PER_SECOND = 960
# Vibrato is written as a pitch-wheel event every this many ticks (~5 ms).
PITCH_STEP_TICKS = 5
# FluidSynth's default pitch-wheel range, in cents either way.
PITCH_WHEEL_CENTS = 200.0
# The SoundFont 2 NRPN: controller 99 = 120 selects a generator by controller 98;
# generator 8 is the initial filter cutoff, 2 cents per data step, centred on 8192.
SF2_NRPN_MSB, FILTER_CUTOFF_GENERATOR, FILTER_CENTS_PER_STEP = 120, 8, 2.0
# Noise colours: spectral power slope (power ~ 1 / f^slope).
NOISE_SLOPES = {"white": 0.0, "pink": 1.0, "brown": 2.0}
CODECS = ("none", "mp3")
# Decimals of the drawn values (as parameters.csv records them).
DECIMALS = 4


@dataclass(frozen=True)
class Variation:
    """The concrete variation of one clip: one column of parameters.csv each.

    A value that switches a stage off: 0 (detune, vibrato, brightness, filter
    gains), 0 for ``room_rt60`` (dry), ``eq_highpass_hz`` and
    ``eq_lowpass_hz`` (no filter), NaN for ``level_dbfs`` (the synthesiser's
    own level), ``noise_db`` and ``hum_db`` (none), ``"none"`` for ``codec``.
    """

    note_seconds: float = 1.0
    detune_cents: float = 0.0
    vibrato_cents: float = 0.0
    vibrato_hz: float = 0.0
    brightness_cents: float = 0.0
    room_rt60: float = 0.0
    room_size_m: float = 0.0
    mic_distance_m: float = 0.0
    eq_highpass_hz: float = 0.0
    eq_lowpass_hz: float = 0.0
    eq_low_shelf_db: float = 0.0
    eq_high_shelf_db: float = 0.0
    eq_peak_hz: float = 1000.0
    eq_peak_db: float = 0.0
    level_dbfs: float = math.nan
    noise_db: float = math.nan
    noise_color: str = "white"
    hum_db: float = math.nan
    hum_hz: float = 50.0
    codec: str = "none"
    codec_quality: int = 0

    @property
    def is_clean(self) -> bool:
        """No expression and no recording chain: the seed's clips."""
        return (not (self.detune_cents or self.vibrato_cents or self.brightness_cents or self.room_rt60
                     or self.eq_highpass_hz or self.eq_lowpass_hz or self.eq_low_shelf_db or self.eq_high_shelf_db
                     or self.eq_peak_db) and self.codec == "none"
                and all(math.isnan(value) for value in (self.level_dbfs, self.noise_db, self.hum_db)))

    def columns(self) -> dict[str, Any]:
        """The values as parameters.csv columns (``note_seconds`` is the ``duration`` column)."""
        values = dataclasses.asdict(self)
        values = {"duration": values.pop("note_seconds"), **values}
        return values

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> "Variation":
        """Rebuild from a parameters.csv row (a missing column takes the clean value)."""
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            key = "duration" if item.name == "note_seconds" else item.name
            if key in row:
                cast = {"float": float, "int": int, "str": str}[item.type]
                values[item.name] = cast(row[key])
        return cls(**values).checked()

    def checked(self) -> "Variation":
        """Self, or a UserError naming the first value out of range."""
        for name, (low, high) in VALUE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, float) and math.isnan(value) and name in OPTIONAL_VALUES:
                continue
            if not (isinstance(value, (int, float)) and low <= value <= high):
                raise UserError(f"{name} must be within {low:g}..{high:g}, got {value!r}")
        if self.noise_color not in NOISE_SLOPES:
            raise UserError(f"noise_color must be one of {', '.join(NOISE_SLOPES)}, got {self.noise_color!r}")
        if self.codec not in CODECS:
            raise UserError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        if 0 < self.eq_lowpass_hz <= self.eq_highpass_hz:
            raise UserError(f"eq_highpass_hz ({self.eq_highpass_hz:g}) must be below eq_lowpass_hz "
                            f"({self.eq_lowpass_hz:g}): the two filters together would pass no band")
        if self.room_rt60 > 0 and not (self.room_size_m >= MIN_ROOM_M and self.mic_distance_m > 0):
            raise UserError(f"a room (room_rt60 > 0) needs room_size_m of at least {MIN_ROOM_M:g} m and "
                            "mic_distance_m above 0")
        return self


# Where each value may lie (what a user may ask of render_note.py, what a recipe may draw).
VALUE_LIMITS: dict[str, tuple[float, float]] = {
    "note_seconds": (0.01, 60.0),
    "detune_cents": (-100.0, 100.0),
    "vibrato_cents": (0.0, 100.0),
    "vibrato_hz": (0.0, 20.0),
    "brightness_cents": (-6000.0, 0.0),
    "room_rt60": (0.0, 3.0),
    "room_size_m": (0.0, 50.0),
    "mic_distance_m": (0.0, 20.0),
    "eq_highpass_hz": (0.0, 2000.0),
    "eq_lowpass_hz": (0.0, 22050.0),
    "eq_low_shelf_db": (-24.0, 24.0),
    "eq_high_shelf_db": (-24.0, 24.0),
    "eq_peak_hz": (20.0, 20000.0),
    "eq_peak_db": (-24.0, 24.0),
    "level_dbfs": (-80.0, 0.0),
    "noise_db": (-140.0, 0.0),
    "hum_db": (-140.0, 0.0),
    "hum_hz": (40.0, 70.0),
    "codec_quality": (0, 9),
}
# The smallest room (its length, m): the source and microphone stand half a metre from its walls.
MIN_ROOM_M = 2.0
# Values where NaN means "off".
OPTIONAL_VALUES = ("level_dbfs", "noise_db", "hum_db")


@dataclass(frozen=True)
class Recipe:
    """Ranges (low, high) and probabilities from which each clip's :class:`Variation` is drawn.

    A range is drawn uniformly, or log-uniformly where the name says so in
    :data:`LOG_RANGES`; ``*_probability`` is the share of clips that get the
    stage at all.  ``volume`` is drawn with the note (velocity = round(127 volume)).
    """

    name: str = "custom"
    volume: tuple[float, float] = (0.5, 1.0)
    note_seconds: tuple[float, float] = (1.0, 1.0)
    detune_cents: tuple[float, float] = (0.0, 0.0)
    vibrato_probability: float = 0.0
    vibrato_cents: tuple[float, float] = (5.0, 40.0)
    vibrato_hz: tuple[float, float] = (4.0, 7.0)
    brightness_probability: float = 0.0
    brightness_cents: tuple[float, float] = (-2400.0, 0.0)
    room_probability: float = 0.0
    room_rt60: tuple[float, float] = (0.15, 1.2)
    room_size_m: tuple[float, float] = (3.0, 20.0)
    mic_distance_m: tuple[float, float] = (0.3, 4.0)
    eq_probability: float = 0.0
    eq_highpass_hz: tuple[float, float] = (20.0, 200.0)
    eq_lowpass_probability: float = 0.5
    eq_lowpass_hz: tuple[float, float] = (4000.0, 20000.0)
    eq_shelf_db: tuple[float, float] = (-9.0, 9.0)
    eq_peak_hz: tuple[float, float] = (200.0, 8000.0)
    eq_peak_db: tuple[float, float] = (-9.0, 9.0)
    level_probability: float = 0.0
    level_dbfs: tuple[float, float] = (-40.0, -3.0)
    noise_probability: float = 0.0
    noise_db: tuple[float, float] = (-90.0, -35.0)
    hum_probability: float = 0.0
    hum_db: tuple[float, float] = (-75.0, -40.0)
    codec_probability: float = 0.0
    codec_quality: tuple[int, int] = (2, 9)

    def draw(self, rng: np.random.Generator, *, note_seconds_max: float | None = None) -> Variation:
        """One clip's variation.  Every value is drawn, on or off, in a fixed order (see the module docstring)."""
        # Values are rounded as drawn, so that parameters.csv holds exactly the values used.
        def uniform(bounds):
            return round(float(rng.uniform(*bounds)), DECIMALS)

        def log_uniform(bounds):
            return round(float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))), DECIMALS)

        def chance(probability):
            return bool(rng.random() < probability)

        note_seconds = uniform(self.note_seconds)
        if note_seconds_max is not None:
            note_seconds = min(note_seconds, note_seconds_max)
        detune = uniform(self.detune_cents)
        vibrato = chance(self.vibrato_probability), uniform(self.vibrato_cents), uniform(self.vibrato_hz)
        brightness = chance(self.brightness_probability), uniform(self.brightness_cents)
        room = (chance(self.room_probability), log_uniform(self.room_rt60), log_uniform(self.room_size_m),
                log_uniform(self.mic_distance_m))
        eq = (chance(self.eq_probability), log_uniform(self.eq_highpass_hz), chance(self.eq_lowpass_probability),
              log_uniform(self.eq_lowpass_hz), uniform(self.eq_shelf_db), uniform(self.eq_shelf_db),
              log_uniform(self.eq_peak_hz), uniform(self.eq_peak_db))
        level = chance(self.level_probability), uniform(self.level_dbfs)
        noise = chance(self.noise_probability), uniform(self.noise_db), str(rng.choice(list(NOISE_SLOPES)))
        hum = chance(self.hum_probability), uniform(self.hum_db), float(rng.choice([50.0, 60.0]))
        codec = chance(self.codec_probability), int(rng.integers(self.codec_quality[0], self.codec_quality[1] + 1))
        eq_on = eq[0]
        return Variation(
            note_seconds=note_seconds,
            detune_cents=detune,
            vibrato_cents=vibrato[1] if vibrato[0] else 0.0,
            vibrato_hz=vibrato[2] if vibrato[0] else 0.0,
            brightness_cents=brightness[1] if brightness[0] else 0.0,
            room_rt60=room[1] if room[0] else 0.0,
            room_size_m=room[2] if room[0] else 0.0,
            mic_distance_m=room[3] if room[0] else 0.0,
            eq_highpass_hz=eq[1] if eq_on else 0.0,
            eq_lowpass_hz=eq[3] if eq_on and eq[2] else 0.0,
            eq_low_shelf_db=eq[4] if eq_on else 0.0,
            eq_high_shelf_db=eq[5] if eq_on else 0.0,
            eq_peak_hz=eq[6] if eq_on else 1000.0,
            eq_peak_db=eq[7] if eq_on else 0.0,
            level_dbfs=level[1] if level[0] else math.nan,
            noise_db=noise[1] if noise[0] else math.nan,
            noise_color=noise[2] if noise[0] else "white",
            hum_db=hum[1] if hum[0] else math.nan,
            hum_hz=hum[2] if hum[0] else 50.0,
            codec="mp3" if codec[0] else "none",
            codec_quality=codec[1] if codec[0] else 0,
        )

    def to_json(self) -> dict[str, Any]:
        return {key: (list(value) if isinstance(value, tuple) else value)
                for key, value in dataclasses.asdict(self).items()}

    def with_overrides(self, overrides: list[str]) -> "Recipe":
        """A copy with ``KEY=VALUE`` or ``KEY=LOW:HIGH`` overrides (``--vary``); UserError for bad ones."""
        changes: dict[str, Any] = {}
        fields = {item.name: item for item in dataclasses.fields(self) if item.name != "name"}
        for text in overrides:
            key, sep, value = text.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise UserError(f"bad --vary {text!r}: use KEY=VALUE or KEY=LOW:HIGH with KEY one of "
                                f"{', '.join(fields)}")
            if key in changes:  # the last would have won in silence
                raise UserError(f"--vary {key} is given twice: give each setting once")
            try:
                if key.endswith("_probability"):
                    changes[key] = float(value)
                else:
                    parts = [float(part) for part in value.split(":")]
                    if len(parts) == 1:
                        parts *= 2
                    if len(parts) != 2:
                        raise ValueError
                    if key == "codec_quality" and not all(part.is_integer() for part in parts):
                        raise UserError(f"bad --vary {text!r}: codec_quality is a whole number (MP3's VBR "
                                        "quality 0-9)")
                    changes[key] = tuple(int(p) for p in parts) if key == "codec_quality" else tuple(parts)
            except ValueError:
                raise UserError(f"bad --vary {text!r}: {value!r} is not a number or a LOW:HIGH range") from None
        recipe = dataclasses.replace(self, **changes)
        if changes:
            recipe = dataclasses.replace(recipe, name=f"{self.name}+" + ",".join(sorted(changes)))
        return recipe.checked()

    def checked(self) -> "Recipe":
        """Self, or a UserError naming the first probability or range out of bounds."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_probability"):
                if not (isinstance(value, float) and 0.0 <= value <= 1.0):
                    raise UserError(f"{item.name} must be a probability within 0..1, got {value!r}")
            elif item.name != "name":
                limit = RECIPE_LIMITS.get(item.name) or VALUE_LIMITS[item.name]
                low, high = value
                if not (math.isfinite(low) and math.isfinite(high) and limit[0] <= low <= high <= limit[1]):
                    raise UserError(f"{item.name} range {low:g}:{high:g} must be increasing and within "
                                    f"{limit[0]:g}..{limit[1]:g}")
                if item.name in LOG_RANGES and low <= 0:
                    raise UserError(f"{item.name} range must be positive, got {low:g}:{high:g}")
        if self.eq_highpass_hz[1] >= self.eq_lowpass_hz[0]:
            raise UserError(f"eq_highpass_hz range {self.eq_highpass_hz[0]:g}:{self.eq_highpass_hz[1]:g} must lie "
                            f"below eq_lowpass_hz range {self.eq_lowpass_hz[0]:g}:{self.eq_lowpass_hz[1]:g}")
        return self


# Ranges drawn log-uniformly (scale parameters); they must be positive.
LOG_RANGES = ("room_rt60", "room_size_m", "mic_distance_m", "eq_highpass_hz", "eq_lowpass_hz", "eq_peak_hz")
# Limits of the recipe ranges that are not values of a Variation.
RECIPE_LIMITS = {
    "volume": (0.01, 1.0),
    "eq_shelf_db": VALUE_LIMITS["eq_low_shelf_db"],
    "room_rt60": (0.05, 3.0),
    "room_size_m": (MIN_ROOM_M, 50.0),
    "mic_distance_m": (0.1, 20.0),
    "eq_highpass_hz": (10.0, 2000.0),
    "eq_lowpass_hz": (1000.0, 22050.0),
}

# The named recipes of --variation.
#   none: the seed's clean clips (volume 0.5-1, a 1 s note, dry, no recording chain).
#   realistic: a note as a user's recording holds it; each stage on for part of the clips.
RECIPES = {
    "none": Recipe(name="none"),
    "realistic": Recipe(
        name="realistic", volume=(0.2, 1.0), note_seconds=(0.4, 2.0), detune_cents=(-30.0, 30.0),
        vibrato_probability=0.5, brightness_probability=0.5, room_probability=0.7, room_rt60=(0.15, 1.0),
        eq_probability=0.7, eq_lowpass_hz=(6000.0, 20000.0), eq_shelf_db=(-6.0, 6.0), eq_peak_db=(-6.0, 6.0),
        level_probability=1.0, noise_probability=0.8, noise_db=(-90.0, -45.0), hum_probability=0.15,
        codec_probability=0.2, codec_quality=(2, 7)),
}


def get_recipe(name: str, overrides: list[str] | None = None) -> Recipe:
    """The named recipe with ``--vary`` overrides applied; UserError for an unknown name."""
    if name not in RECIPES:
        raise UserError(f"unknown variation {name!r} (choose from: {', '.join(RECIPES)})")
    return RECIPES[name].with_overrides(overrides or [])


# ---------------------------------------------------------------------------
# 1. Expression: the note as MIDI events


def note_events(*, program: int, pitch: int, velocity: int, variation: Variation, sample_rate: int,
                clip_seconds: float, channel: int = 0, bank: int = 0) -> list[NoteEvent]:
    """The MIDI events of one note from t = 0, on the MIDI file's tick grid.

    Every event lies on a tick of :data:`TICKS_PER_SECOND`, so rendering
    these events and rendering the MIDI file written from them give the same
    audio.  A clean variation gives exactly the seed's three events.
    """
    def at(tick: int) -> int:
        return round(tick * sample_rate / TICKS_PER_SECOND)

    events = [NoteEvent(0, "program", channel, program, bank)]
    if variation.brightness_cents:
        value = 8192 + round(variation.brightness_cents / FILTER_CENTS_PER_STEP)
        events += [NoteEvent(0, "control", channel, 99, SF2_NRPN_MSB),
                   NoteEvent(0, "control", channel, 98, FILTER_CUTOFF_GENERATOR),
                   NoteEvent(0, "control", channel, 6, value >> 7),
                   NoteEvent(0, "control", channel, 38, value & 0x7F)]
    bends = []
    if variation.detune_cents or variation.vibrato_cents:
        last = round(clip_seconds * TICKS_PER_SECOND)
        step = PITCH_STEP_TICKS if variation.vibrato_cents else last + 1
        for tick in range(0, last, step):
            cents = variation.detune_cents + variation.vibrato_cents * math.sin(
                2 * math.pi * variation.vibrato_hz * tick / TICKS_PER_SECOND)
            value = min(16383, max(0, 8192 + round(cents / PITCH_WHEEL_CENTS * 8192)))
            if not bends or bends[-1].data1 != value:
                bends.append(NoteEvent(at(tick), "pitchwheel", channel, value))
    events += bends[:1]
    events.append(NoteEvent(0, "note_on", channel, pitch, velocity))
    events += bends[1:]
    events.append(NoteEvent(at(round(variation.note_seconds * TICKS_PER_SECOND)), "note_off", channel, pitch))
    return sorted(events, key=lambda event: event.sample)  # stable: simultaneous events keep their order

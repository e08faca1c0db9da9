#!/usr/bin/env python3
"""Render one note exactly as asked: instrument, pitch, velocity, lengths, font and any variation.

Writes the audio (format from the extension: .flac, .wav, .ogg) and the MIDI
file the note was rendered from (the audio's name with .mid, or --midi).
Every variation setting of generate_audio_samples.py --variation realistic
is an option here, named as its column of parameters.csv (but for the note
length, column ``duration``: --note-seconds); unset ones are off, so the
plain command gives the seed's clean note.  Listen to what one setting does
by rendering the same note with and without it.

Examples:

    python render_note.py --instrument violin --pitch A4 -o violin.flac
    python render_note.py --instrument 41 --pitch 69 --velocity 60 --note-seconds 1.5 --soundfont TimGM6mb -o v.wav
    python render_note.py --instrument violin --pitch A4 --vibrato-cents 25 --vibrato-hz 5.5 \\
        --room-rt60 0.8 --room-size-m 12 --mic-distance-m 3 --noise-db -50 --noise-color pink --codec mp3 \\
        --codec-quality 7 -o violin-in-a-hall.flac

Clip k of a dataset generated with seed s: its parameters.csv row as options (with --bank for our
own synthesiser, --soundfont additive), plus --seed s --sample-id k.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from instrument_classifier.audio import SUPPORTED_EXTENSIONS
from instrument_classifier.cli import ArgumentParser, UserError, atomic_path, entry_point, finite_float, seed_type, warn
from instrument_classifier.defaults import CLIP_SECONDS, DEFAULT_SEED, SAMPLE_RATE
from instrument_classifier.instruments import load_instruments, pitch_number, select_instruments
from instrument_classifier.soundfonts import load_catalogue, resolve_soundfont
from instrument_classifier.midi_files import midi_file_bytes
from instrument_classifier.synthesis import check_audio_path, write_audio
from instrument_classifier.variation import CODECS, NOISE_SLOPES, VALUE_LIMITS, Variation

# Variation fields that are not plain numbers, and their choices.
CHOICES = {"noise_color": tuple(NOISE_SLOPES), "codec": CODECS}
# Settings that shape a stage another one switches on: (that one, as the user gives it).  Given alone,
# each would be silently without effect.
COMPANIONS = {
    "vibrato_hz": ("vibrato_cents", "--vibrato-cents"), "vibrato_cents": ("vibrato_hz", "--vibrato-hz"),
    "room_size_m": ("room_rt60", "--room-rt60"), "mic_distance_m": ("room_rt60", "--room-rt60"),
    "eq_peak_hz": ("eq_peak_db", "--eq-peak-db"), "noise_color": ("noise_db", "--noise-db"),
    "hum_hz": ("hum_db", "--hum-db"), "codec_quality": ("codec", "--codec mp3"),
}


def _given(args: argparse.Namespace, setting: str) -> bool:
    """Whether a variation setting was given with a value other than its default (NaN, "off", counts as NaN).

    A setting at its default changes nothing, so it may come alone: a dataset row holds every setting,
    the defaults of the stages that were off too (hum_hz 50 without hum_db), and its values given back
    render its clip again.
    """
    value, default = getattr(args, setting), getattr(Variation, setting)
    if value is None:
        return False
    if isinstance(default, float) and math.isnan(default):
        return not math.isnan(value)
    return value != default


def _shown_default(default) -> str:
    """The help's note of a setting's default: none for NaN (the stage off until a setting is given)."""
    return "" if isinstance(default, float) and math.isnan(default) else f" (default: {default:g})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"SoundFonts by name: {', '.join(f.name for f in load_catalogue())} (or a path). "
               "Variation settings are explained in instrument_classifier/variation.py; a room needs "
               "--room-rt60, --room-size-m and --mic-distance-m.")
    parser.add_argument("-o", "--output", required=True, help="audio file to write (.flac, .wav or .ogg)")
    parser.add_argument("--midi", default=None, help="MIDI file to write (default: the output's name with .mid)")
    parser.add_argument("--instrument", required=True, help="GM instrument: a name of instruments.csv or an id 1-128")
    parser.add_argument("--pitch", default="C4", help="MIDI number or a name like C4, F#3, Bb2")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--velocity", type=int, default=None, help="MIDI velocity 1-127 (default: 100)")
    level.add_argument("--volume", type=float, default=None, help="volume 0.004-1 (velocity = round(127 volume))")
    parser.add_argument("--soundfont", default=None, help="a name, or a .sf2/.sf3 path (default: the default SoundFont)")
    parser.add_argument("--bank", type=int, default=0,
                        help="MIDI bank: with --soundfont additive, which of its random instruments (0-16383)")
    parser.add_argument("--clip-seconds", type=float, default=CLIP_SECONDS, help="length of the audio")
    parser.add_argument("--seed", type=seed_type, default=DEFAULT_SEED,
                        help="seed of the noise and hum: with --sample-id, a dataset's (seed, sample_id) "
                             "gives exactly its clip")
    parser.add_argument("--sample-id", type=int, default=0, help="see --seed")
    variation = parser.add_argument_group(
        "variation", "each stage (a room, an equaliser band, noise, hum, a codec, ...) is off unless one of its "
                     "settings is given; a default shown is the value a setting takes when its stage is on")
    for item in dataclasses.fields(Variation):
        option = "--" + item.name.replace("_", "-")
        if item.name in CHOICES:
            variation.add_argument(option, choices=CHOICES[item.name], default=None,
                                   help=f"default: {item.default}")
        else:
            low, high = VALUE_LIMITS[item.name]
            help_text = f"{low:g}..{high:g}" + (" (note length)" if item.name == "note_seconds" else "")
            variation.add_argument(option, type=int if item.type == "int" else finite_float,
                                   default=None, metavar="X", help=help_text + _shown_default(item.default))
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = check_audio_path(args.output)
    midi_path = Path(args.midi) if args.midi else output.with_suffix(".mid")
    if midi_path.resolve() == output.resolve():
        raise UserError("the MIDI file and the audio file must differ")
    if midi_path.suffix.lower() in SUPPORTED_EXTENSIONS:  # an audio file it would overwrite with MIDI
        raise UserError(f"--midi is the MIDI file ({midi_path.name}): name it .mid")
    instrument = select_instruments(load_instruments(), instruments=[args.instrument]).iloc[0]
    pitch = pitch_number(args.pitch)
    if args.volume is not None:
        velocity = round(127 * args.volume) if math.isfinite(args.volume) else 0
        if not (0 < args.volume <= 1 and velocity >= 1):
            raise UserError(f"--volume must be within 0.004..1 (velocity = round(127 volume), at least 1), "
                            f"got {args.volume}")
    else:
        velocity = 100 if args.velocity is None else args.velocity
    if not 1 <= velocity <= 127:
        raise UserError(f"--velocity must be within 1..127, got {velocity}")
    if not 0 <= args.bank < 16384:
        raise UserError(f"--bank must be within 0..16383, got {args.bank}")
    if args.sample_id < 0:
        raise UserError(f"--sample-id must be at least 0, got {args.sample_id}")
    if not (math.isfinite(args.clip_seconds) and 0.05 <= args.clip_seconds <= 60):
        raise UserError(f"--clip-seconds must be within 0.05..60, got {args.clip_seconds}")
    for setting, (needed, shown) in COMPANIONS.items():
        if _given(args, setting) and getattr(args, needed) is None:  # its partner's value: a dataset row's, say
            raise UserError(f"--{setting.replace('_', '-')} does nothing without {shown}: give {shown} too")
    variation = Variation(**{item.name: item.default if getattr(args, item.name) is None else getattr(args, item.name)
                             for item in dataclasses.fields(Variation)}).checked()
    font = resolve_soundfont(args.soundfont)

    from instrument_classifier.generation import SILENCE_PEAK, is_silent, render_note

    audio, dry, events = render_note(font, program=int(instrument.midi_program), pitch=pitch, velocity=velocity,
                                     variation=variation, clip_seconds=args.clip_seconds, bank=args.bank,
                                     seed=args.seed, sample_id=args.sample_id)
    with atomic_path(midi_path) as tmp:  # the MIDI file appears only once the audio is written
        tmp.write_bytes(midi_file_bytes(events, SAMPLE_RATE))
        write_audio(output, audio, SAMPLE_RATE)
    peak = float(np.abs(audio).max())
    if peak > 1.0:
        warn(f"{int(np.count_nonzero(np.abs(audio) > 1.0))} samples past full scale were clipped (the note peaks at "
             f"{20 * math.log10(peak):+.1f} dBFS): lower --level-dbfs, --noise-db or --hum-db")
        peak = 1.0
    if not np.any(dry):  # the recording chain's noise and hum are relative to the note's peak: silent stays silent
        warn(f"{font.name} has no sound for {instrument['name']} at {args.pitch}: the note is silent")
    elif is_silent(dry):
        warn(f"the note peaks at {20 * math.log10(float(np.abs(dry).max())):.1f} dBFS before the recording chain, "
             f"under the {20 * math.log10(SILENCE_PEAK):.0f} dBFS a dataset counts as silent (it would draw another)")
    level = f"peak {20 * math.log10(peak):.1f} dBFS" if peak > 0 else "silent"
    print(f"wrote {output} and {midi_path}: {instrument['name']} {args.pitch} velocity {velocity}, "
          f"{font.name}, {level}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write a MIDI file with a sequence of chords using music21 (a small example).

Examples:

    python generate_chords.py -o chords.mid                       # I-vi-IV-V-I in C major
    python generate_chords.py -o chords.mid --key D --audio chords.flac
    python generate_chords.py -o chords.mid --progression I IV V I --instrument violin

With --audio the MIDI file is also rendered through fluidsynth_wrapper's
renderer (the default SoundFont, or --soundfont).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from instrument_classifier.audio import SUPPORTED_EXTENSIONS
from instrument_classifier.cli import ArgumentParser, UserError, atomic_path, entry_point
from instrument_classifier.defaults import SAMPLE_RATE
from instrument_classifier.instruments import load_instruments, select_instruments
from instrument_classifier.soundfonts import resolve_soundfont
from instrument_classifier.midi_files import MAX_MIDI_SECONDS
from instrument_classifier.synthesis import check_audio_path, write_audio


# The fastest --tempo: past any score's (prestissimo is ~200 bpm); MIDI would store 100,000,000 as 1 us a
# quarter note, and the file would last microseconds.
MAX_TEMPO = 1000
DEFAULT_PROGRESSION = ("I", "vi", "IV", "V", "I")


def chord_stream(progression: list[str], *, key: str, beats: float, program: int, tempo: int):
    """A music21 stream of the Roman-numeral ``progression`` in ``key``."""
    from music21 import instrument, key as m21key, roman, stream, tempo as m21tempo
    from music21.exceptions21 import Music21Exception

    try:
        scale = m21key.Key(key)
    except (Music21Exception, ValueError) as error:  # PitchException, AccidentalException; ValueError for "1"
        raise UserError(f"unknown key {key!r}: {error}") from None
    part = stream.Part()
    part.insert(0, m21tempo.MetronomeMark(number=tempo))
    part_instrument = instrument.instrumentFromMidiProgram(program)
    part_instrument.midiProgram = program
    part.insert(0, part_instrument)
    for figure in progression:
        try:
            chord = roman.RomanNumeral(figure, scale)
        except (Music21Exception, ValueError) as error:  # RomanNumeralException
            raise UserError(f"unknown chord {figure!r}: {error}") from None
        if not chord.pitches:
            raise UserError(f"unknown chord {figure!r}")
        chord.quarterLength = beats
        part.append(chord)
    return part


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default="chords.mid", help="MIDI file to write")
    parser.add_argument("--progression", nargs="+", action="extend", default=None,
                        help=f"Roman-numeral chords (default: {' '.join(DEFAULT_PROGRESSION)}; given twice, "
                             "the second follows the first)")
    parser.add_argument("--key", default="C", help="key, e.g. C, a (minor), E-")
    parser.add_argument("--beats", type=float, default=2.0, help="quarter notes per chord")
    parser.add_argument("--tempo", type=int, default=100, help=f"beats per minute (1-{MAX_TEMPO})")
    parser.add_argument("--instrument", default="1",
                        help="GM instrument, as the other scripts take it: a name of instruments.csv or an id 1-128, "
                             "the GM program + 1 (until 2026-12 this option took the program, 0-127; "
                             "default: 1, acoustic grand piano)")
    parser.add_argument("--audio", metavar="FILE", help="also render to this audio file (.wav/.flac/.ogg)")
    parser.add_argument("-s", "--soundfont",
                        help="SoundFont for --audio: a name from data/soundfonts.csv or a path "
                             "(default: the wrapper's default)")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.progression = args.progression or list(DEFAULT_PROGRESSION)
    program = int(select_instruments(load_instruments(), instruments=[args.instrument]).iloc[0]["midi_program"])
    if not (math.isfinite(args.beats) and args.beats > 0) or args.tempo <= 0:
        raise UserError("--beats and --tempo must be positive numbers")
    if args.tempo > MAX_TEMPO:
        raise UserError(f"--tempo must be at most {MAX_TEMPO} beats per minute, got {args.tempo}")
    from music21.defaults import ticksPerQuarter  # music21's MIDI resolution

    if args.beats < 1 / ticksPerQuarter:  # it rounds a shorter chord to no time at all: a silent file
        raise UserError(f"--beats must be at least 1/{ticksPerQuarter} (one MIDI tick), got {args.beats:g}")
    seconds = len(args.progression) * args.beats * 60 / args.tempo
    if seconds > MAX_MIDI_SECONDS:
        raise UserError(f"{len(args.progression)} chords of {args.beats:g} beats at {args.tempo} bpm last "
                        f"{seconds:,.0f} s; at most {MAX_MIDI_SECONDS} s")
    output = Path(args.output)
    if output.suffix.lower() in SUPPORTED_EXTENSIONS:
        raise UserError(f"-o is the MIDI file ({output.name}): name it .mid and give the audio file with --audio")
    if args.audio and Path(args.audio).resolve() == output.resolve():
        raise UserError("the MIDI file and the audio file must differ")
    if args.soundfont and not args.audio:
        raise UserError("--soundfont renders the --audio file: give --audio too")
    font = None
    if args.audio:  # before anything is written
        check_audio_path(args.audio)
        font = resolve_soundfont(args.soundfont)
    part = chord_stream(args.progression, key=args.key, beats=args.beats, program=program,
                        tempo=args.tempo)
    # The MIDI file appears only once the audio, rendered from it, is written: nothing half-done.
    try:
        with atomic_path(output, suffix=".mid") as tmp:
            part.write("midi", fp=str(tmp))
            if font is not None:
                with font.renderer(SAMPLE_RATE) as renderer:
                    audio = renderer.render_midi(tmp)
                write_audio(args.audio, audio, renderer.sample_rate)
    except OSError as error:
        raise UserError(f"cannot write {output}: {error.strerror or error}") from None
    print(f"wrote {output} ({len(args.progression)} chords)" + (f" and {args.audio}" if args.audio else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

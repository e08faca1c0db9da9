#!/usr/bin/env python3
"""Convert a MIDI file to audio, or play it, with FluidSynth and a SoundFont.

Examples:

    python fluidsynth_wrapper.py input.mid output.wav        # convert (default SoundFont)
    python fluidsynth_wrapper.py input.mid output.flac       # the format follows the extension
    python fluidsynth_wrapper.py -s font.sf2 input.mid out.flac
    python fluidsynth_wrapper.py -s TimGM6mb input.mid out.flac    # a font of data/soundfonts.csv by name
    python fluidsynth_wrapper.py input.mid                   # play on the audio device
    python fluidsynth_wrapper.py --set-default font.sf2      # store the default SoundFont

The default SoundFont is the path stored in ~/.fluidsynth/default_sound_font,
else Debian's FluidR3_GM.sf2, else the TimGM6mb.sf2 that pretty_midi ships.
Rendering runs in-process (pyfluidsynth); no fluidsynth subprocess.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instrument_classifier.cli import ArgumentParser, UserError, entry_point
from instrument_classifier.defaults import SAMPLE_RATE
from instrument_classifier.soundfonts import resolve_soundfont
from instrument_classifier.synthesis import (AUDIO_FORMATS, check_audio_path, default_soundfont, play_midi,
                                             set_default_soundfont, write_audio)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"Output formats: {', '.join(AUDIO_FORMATS)}.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", help="MIDI file (.mid)")
    parser.add_argument("output", nargs="?", help="audio file to write; omit to play the MIDI file")
    parser.add_argument("-s", "--soundfont", help="SoundFont to use instead of the default: a .sf2/.sf3 path or a name "
                                                  "from data/soundfonts.csv (additive: our own synthesiser)")
    parser.add_argument("-r", "--rate", type=int, default=SAMPLE_RATE, help="sample rate in Hz (default: %(default)s)")
    parser.add_argument("--set-default", metavar="SF2",
                        help="store SF2 (a .sf2/.sf3 path or a catalogue name) as the default SoundFont and exit")
    parser.add_argument("--show-default", action="store_true", help="print the default SoundFont and exit")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.set_default or args.show_default:
        if args.input or (args.set_default and args.show_default):
            raise UserError("--set-default and --show-default each work alone: give no MIDI file and not both")
        if args.set_default:
            if args.set_default.strip().lower() == "all":
                raise UserError("--set-default stores one SoundFont: give its name or path")
            font = resolve_soundfont(args.set_default)  # a catalogue name or a path
            if font.builtin:
                raise UserError(f"{font.name} is our own synthesiser, not a SoundFont file: it cannot be the default")
            print(f"default SoundFont: {set_default_soundfont(font.path)}")
        else:
            print(default_soundfont())
        return 0
    if not args.input:
        raise UserError("give a MIDI file to convert or play (see --help)")
    if not Path(args.input).is_file():
        raise UserError(f"MIDI file not found: {args.input}" if not Path(args.input).exists()
                        else f"{args.input} is not a file")
    if not 8000 <= args.rate <= 192000:
        raise UserError(f"sample rate must be within 8000..192000 Hz, got {args.rate}")
    if args.output is not None:
        check_audio_path(args.output)
    font = resolve_soundfont(args.soundfont)
    if args.output is None:
        if font.builtin:
            raise UserError(f"{font.name} (our own synthesiser) renders to a file only: give an output file")
        play_midi(args.input, font.path)
        return 0
    with font.renderer(args.rate) as renderer:
        audio = renderer.render_midi(args.input)
    write_audio(args.output, audio, args.rate)
    print(f"wrote {args.output} ({len(audio) / args.rate:.2f} s at {args.rate} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

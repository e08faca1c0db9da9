#!/usr/bin/env python3
"""Generate random single-note clips of General MIDI instruments.

Each clip is one note (instrument, pitch and volume drawn at random) written
as a MIDI file and synthesised by FluidSynth: 2.0 s of 44.1 kHz mono audio,
the note from t = 0.  --variation realistic also varies how it is played
(velocity, length, detune, vibrato, brightness) and recorded (room, microphone
colour, level, noise and hum, MP3); --variation none gives the seed's clean
clips (the note held 1.0 s, dry).  Same seed, same bytes, for any --jobs, on
this machine or on a Dask cluster (--scheduler).

Examples:

    # the default multi-font dataset that `make pipeline` builds
    python generate_audio_samples.py -c 10000 -s 42 --soundfont all --variation realistic \
        -o data/working/multi-font-10000
    # the seed's single-font experiment
    python generate_audio_samples.py -c 2000 -s 42 -o data/working/single-notes-2000 -f flac
    # an ablation: the same clips without rooms
    python generate_audio_samples.py -c 6000 --soundfont all --variation realistic --vary room_probability=0 -o OUT
    # the same clips on a running Dask cluster (README, Running on a cluster): OUT on a folder every worker sees
    python generate_audio_samples.py -c 60000 --soundfont all --variation realistic \
        --scheduler tcp://scheduler-host:8786 -o /shared/datasets/multi-font-60000

Writes OUT/parameters.csv, OUT/audio/sample_000000.flac ..., OUT/midi/sample_000000.mid ...
and OUT/generation.json (arguments, counts, library versions, time).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from instrument_classifier.cli import ArgumentParser, UserError, entry_point, positive_int, seed_type
from instrument_classifier.defaults import DEFAULT_FAMILIES, DEFAULT_SEED, WORKING_DIR
from instrument_classifier.generation import FORMATS, GenerationSettings, generate_dataset
from instrument_classifier.instruments import load_instruments, select_instruments
from instrument_classifier.soundfonts import load_catalogue, resolve_soundfonts
from instrument_classifier.variation import RECIPES, Recipe, get_recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Instruments and families are the `name` and `family_name` columns of instruments.csv. "
               f"SoundFonts by name (data/soundfonts.csv): {', '.join(f.name for f in load_catalogue())}. "
               "--vary keys (KEY=VALUE for a probability, KEY=LOW:HIGH for a range; see "
               f"instrument_classifier/variation.py): {', '.join(k for k in Recipe().to_json() if k != 'name')}.")
    parser.add_argument("-c", "--count", type=int, default=2000, help="number of clips")
    parser.add_argument("-s", "--seed", type=seed_type, default=DEFAULT_SEED, help="random seed")
    parser.add_argument("-o", "--output-dir",
                        help="dataset folder to create; needed unless the recipe is the seed's (default: "
                             f"{os.path.relpath(WORKING_DIR)}/single-notes-COUNT) or the default one (--soundfont "
                             "all --variation realistic: multi-font-COUNT), with the default seed and options")
    parser.add_argument("-f", "--format", default="flac", help=f"audio format: {' or '.join(FORMATS)}")
    parser.add_argument("-j", "--jobs", type=positive_int, default=None,
                        help="worker processes on this machine (default: all cores; not with --scheduler)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="run on the Dask cluster whose scheduler is there (`dask scheduler`); -o must be a "
                             "folder every worker sees (default: this machine's cores)")
    parser.add_argument("--soundfont", action="extend", nargs="+", metavar="NAME_OR_PATH",
                        help="SoundFont: a name from data/soundfonts.csv, 'all' of them, or a .sf2/.sf3 path; "
                             "several spread the clips over the fonts, clip i on font i mod n "
                             "(default: fluidsynth_wrapper.py's default SoundFont)")
    parser.add_argument("--variation", choices=list(RECIPES), default="none",
                        help="how notes are played and recorded: none (the seed's clean clips) or realistic")
    parser.add_argument("--vary", action="append", metavar="KEY=VALUE", default=[],
                        help="change one setting of the variation recipe, e.g. room_probability=0 or "
                             "noise_db=-60:-30 (repeatable)")
    parser.add_argument("--families", nargs="+", metavar="FAMILY",
                        help=f"families that play (default: {' '.join(DEFAULT_FAMILIES)})")
    parser.add_argument("--instruments", nargs="+", metavar="NAME_OR_ID",
                        help="instruments that play (names or ids 1-128); not with --families")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier dataset in the output folder, with its features and splits "
                             "(never a folder that holds other files or trained models)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar (nor the cluster's dashboard address)")
    return parser.parse_args(argv)


def default_output_dir(args: argparse.Namespace, settings: GenerationSettings) -> Path:
    """The folder of the seed's recipe (``single-notes-COUNT``) or the default one (``multi-font-COUNT``).

    Only those two recipes have a default folder, named as the README's
    commands name them; anything else needs ``-o``, so that a run never fills
    a standard dataset's folder with other clips.
    """
    plain = args.seed == DEFAULT_SEED and not args.vary and not args.families and not args.instruments \
        and settings.audio_format == "flac"
    if plain and not args.soundfont and args.variation == "none":
        return WORKING_DIR / f"single-notes-{settings.count}"
    if plain and settings.soundfonts == resolve_soundfonts(["all"]) and args.variation == "realistic":
        return WORKING_DIR / f"multi-font-{settings.count}"
    raise UserError("give the output folder with -o: only the seed's recipe (one default font, --variation none) and "
                    "the default one (--soundfont all --variation realistic), seed and options as they come, have "
                    "a default folder")


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.families and args.instruments:
        raise UserError("--instruments names the instruments, --families chooses them by family: give one of them")
    instruments = select_instruments(load_instruments(), families=args.families, instruments=args.instruments)
    settings = GenerationSettings(count=args.count, seed=args.seed, audio_format=args.format.lower(),
                                  soundfonts=resolve_soundfonts(args.soundfont), instruments=instruments,
                                  recipe=get_recipe(args.variation, args.vary))
    output_dir = args.output_dir if args.output_dir is not None else default_output_dir(args, settings)
    parameters = generate_dataset(settings, output_dir, jobs=args.jobs, scheduler=args.scheduler,
                                  overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {len(parameters)} clips to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

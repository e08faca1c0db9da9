#!/usr/bin/env python3
"""Listen to a model's mistakes: copy the misclassified clips and show them on one page.

Copies the misclassified clips of the test split (or --split) into
MODEL_DIR/evaluation/errors/ as <sample_id>-true-<class>-pred-<class>.flac,
with each clip's chromagram and predicted probabilities as a PNG, errors.csv,
and index.html with an audio player per clip.  --play then plays them in
order (needs an audio player: ffplay, paplay, pw-play, aplay or afplay).

Examples:

    python analyze_errors.py data/working/multi-font-10000/models/<model_id>
    python analyze_errors.py MODEL_DIR --split valid --play
"""

from __future__ import annotations

import argparse
import sys

from instrument_classifier.cli import ArgumentParser, entry_point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="model folder (train.py's last output line)")
    parser.add_argument("--split", choices=("train", "valid", "test", "all"), default="test",
                        help="whose misclassified clips")
    parser.add_argument("--play", action="store_true", help="play the clips in order afterwards")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from instrument_classifier.error_analysis import analyze_errors, find_player, play_clips

    player = find_player() if args.play else None  # fail before any work when there is no audio
    index = analyze_errors(args.model_dir, split=args.split, quiet=args.quiet)
    if player is not None:
        play_clips(index.parent, player=player)
    return 0


if __name__ == "__main__":
    sys.exit(main())

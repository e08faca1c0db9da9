"""The General MIDI Level 1 patch map: 128 instruments in 16 families of 8.

``instruments.csv`` columns: ``id`` (1-128; the MIDI program is ``id - 1``),
``name`` (unique identifier), ``desc``, ``family_name``, ``family_desc``,
``tonal``, ``harmonic`` (booleans) and ``min_pitch``/``max_pitch`` (a playable
MIDI range; see the README for where the ranges come from).
"""

from __future__ import annotations

import difflib

import os
import re
from collections.abc import Iterable

import pandas as pd

from .cli import UserError
from .defaults import DEFAULT_FAMILIES, INSTRUMENTS_CSV

COLUMNS = ("id", "name", "desc", "family_name", "family_desc", "tonal", "harmonic", "min_pitch", "max_pitch")


def load_instruments(path: str | os.PathLike = INSTRUMENTS_CSV) -> pd.DataFrame:
    """Return the instrument table, one row per GM program, in program order."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read instrument table {path}: {error}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"instrument table {path} lacks columns: {', '.join(missing)}")
    table["midi_program"] = table["id"] - 1
    return table


def family_names(table: pd.DataFrame) -> list[str]:
    """The 16 family identifiers in GM order."""
    return list(dict.fromkeys(table["family_name"]))


def select_instruments(
    table: pd.DataFrame,
    *,
    families: Iterable[str] | None = None,
    instruments: Iterable[str | int] | None = None,
) -> pd.DataFrame:
    """Rows of the instruments that play in a dataset.

    ``instruments`` (names or ids 1-128; a name in any case, with spaces or
    hyphens for its underscores) wins over ``families``; with neither, the
    default seven harmonic families are used.  Unknown names raise
    ``UserError``, with the closest names.
    """
    if instruments:
        by_name = dict(zip(table["name"], table.index))
        chosen = []
        for item in instruments:
            key = str(item).strip()
            name = "_".join(key.lower().replace("-", " ").split())  # "Acoustic Grand Piano" is acoustic_grand_piano
            if key.isdigit() and 1 <= int(key) <= len(table):
                chosen.append(int(key) - 1)
            elif name in by_name:
                chosen.append(by_name[name])
            else:
                close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise UserError(f"unknown instrument {key!r} (use a name from instruments.csv or an id "
                                f"1-128{hint})")
        return table.loc[sorted(set(chosen))].reset_index(drop=True)
    families = list(DEFAULT_FAMILIES if not families else families)
    known = family_names(table)
    unknown = [f for f in families if f not in known]
    if unknown:
        raise UserError(f"unknown family {unknown[0]!r} (known: {', '.join(known)})")
    return table[table["family_name"].isin(families)].reset_index(drop=True)


# Semitones above C of the note letters.
_LETTERS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def pitch_number(text: str | int) -> int:
    """A MIDI number 0-127 from a number or a scientific pitch name: ``60``, ``"C4"``, ``"F#3"``, ``"Bb2"``.

    >>> pitch_number("A4"), pitch_number("C#4"), pitch_number("Db4"), pitch_number("21")
    (69, 61, 61, 21)
    """
    key = str(text).strip()
    match = re.fullmatch(r"([A-Ga-g])([#b]?)(-?\d+)", key)
    if re.fullmatch(r"-?\d+", key):
        number = int(key)
    elif match:
        letter, accidental, octave = match.groups()
        number = 12 * (int(octave) + 1) + _LETTERS[letter.upper()] + {"#": 1, "b": -1, "": 0}[accidental]
    else:
        raise UserError(f"bad pitch {key!r}: use a MIDI number (60) or a name like C4, F#3, Bb2")
    if not 0 <= number <= 127:
        raise UserError(f"pitch {key!r} is outside MIDI's 0..127")
    return number

"""The SoundFont catalogue: the General MIDI fonts the project trains on.

``data/soundfonts.csv`` has one row per font::

    name      what the command lines and parameters.csv call it (FluidR3_GM, TimGM6mb, ...)
    file      where its Debian package installs it (``builtin:additive``: our own
              synthesiser, :mod:`instrument_classifier.additive`)
    package   the Debian package (``make setup`` installs them all)
    licence   the font's licence, as its package's copyright file states it
    lineage   fonts built from the same recordings share a lineage ("fluid", "gs"; "own"
              for our synthesiser): holding out a whole lineage is what tests sounds
              the model never heard
    notes     what the lineage rests on

Fonts share samples, so a font is not an independent sound bank:
``bench/bench_soundfonts.py`` counts the sample names two fonts share and
compares their renders of the same notes (README, *The SoundFont catalogue*).

>>> [font.name for font in resolve_soundfonts(["all"])]
['FluidR3_GM', 'FluidR3Mono', 'MuseScore_General', 'TimGM6mb', 'sf_GMbank', 'additive']
>>> resolve_soundfonts(["TimGM6mb"])[0].lineage
'gs'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from .cli import UserError
from .defaults import SOUNDFONTS_CSV
from .synthesis import Renderer, check_soundfont, default_soundfont

COLUMNS = ("name", "file", "package", "licence", "lineage")
# The lineage of a font that is not in the catalogue (a path given by the user).
UNKNOWN_LINEAGE = "other"
# The "file" of a font that is a synthesiser of this project.
BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class SoundFont:
    """One SoundFont: its name (as recorded in parameters.csv), file and lineage."""

    name: str
    path: Path
    lineage: str = UNKNOWN_LINEAGE
    package: str | None = None

    @property
    def builtin(self) -> bool:
        """Our own synthesiser (file ``builtin:additive``), not a SoundFont file."""
        return str(self.path).startswith(BUILTIN_PREFIX)

    def renderer(self, sample_rate: int):
        """A fresh renderer of this font: :class:`synthesis.Renderer` or :class:`additive.AdditiveRenderer`."""
        if self.builtin:
            from .additive import AdditiveRenderer

            return AdditiveRenderer(sample_rate)
        return Renderer(self.path, sample_rate=sample_rate)


@lru_cache(maxsize=4)
def _read_catalogue(path: str) -> tuple[SoundFont, ...]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the SoundFont catalogue {path}: {error}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise UserError(f"SoundFont catalogue {path} lacks columns: {', '.join(missing)}")
    return tuple(SoundFont(name=row.name, path=Path(row.file), lineage=row.lineage, package=row.package or None)
                 for row in table.itertuples())


def load_catalogue(path: str | os.PathLike = SOUNDFONTS_CSV) -> tuple[SoundFont, ...]:
    """Every font of the catalogue, in its order (installed or not)."""
    return _read_catalogue(str(path))


def lineages(catalogue: tuple[SoundFont, ...] | None = None) -> dict[str, list[str]]:
    """Lineage -> the names of its fonts, in catalogue order."""
    out: dict[str, list[str]] = {}
    for font in catalogue or load_catalogue():
        out.setdefault(font.lineage, []).append(font.name)
    return out


def installed(font: SoundFont) -> SoundFont:
    """``font`` if its file is there and is a SoundFont; else a UserError naming the package to install."""
    if font.builtin:
        return font
    if not font.path.is_file():
        hint = (f": install the Debian package {font.package} (make setup does)" if font.package
                else "")
        raise UserError(f"SoundFont {font.name} is not installed ({font.path} not found){hint}")
    check_soundfont(font.path)
    return font


def soundfont_for_path(path: str | os.PathLike) -> SoundFont:
    """The catalogue entry of a font file (matched by its resolved path), else an uncatalogued font named by its file."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    for font in load_catalogue():
        if not font.builtin and font.path.resolve() == resolved:
            return SoundFont(font.name, path, font.lineage, font.package)
    return SoundFont(path.name, check_soundfont(path))


def resolve_soundfont(spec: str | None) -> SoundFont:
    """One ``--soundfont`` value as one font (a catalogue name or a path; none: the default); ``all`` is a UserError."""
    if spec is not None and str(spec).strip().lower() == "all":
        raise UserError("--soundfont all names every font of the catalogue; this command plays one: give its "
                        f"name ({', '.join(font.name for font in load_catalogue())}) or a path")
    (font,) = resolve_soundfonts([spec] if spec else None, several=False)
    return font


def resolve_soundfonts(specs: list[str] | None, *, several: bool = True) -> tuple[SoundFont, ...]:
    """Turn ``--soundfont`` values into fonts: catalogue names, ``all``, or paths.

    No value means the default SoundFont (``fluidsynth_wrapper.py --show-default``).
    A catalogue name is matched without regard to case; a font that is not
    installed is a UserError naming its Debian package; anything else must be
    the path of a SoundFont file.  A font named twice is a UserError.
    """
    if not specs:
        return (soundfont_for_path(default_soundfont()),)
    catalogue = load_catalogue()
    by_name = {font.name.lower(): font for font in catalogue}
    fonts: list[SoundFont] = []
    for spec in specs:
        key = str(spec).strip()
        if key.lower() == "all":
            fonts.extend(installed(font) for font in catalogue)
        elif key.lower() in by_name:
            fonts.append(installed(by_name[key.lower()]))
        elif os.sep in key or Path(key).suffix.lower() in (".sf2", ".sf3") or Path(key).exists():
            fonts.append(soundfont_for_path(key))
        else:
            choices = "a path, 'all' or a name" if several else "a path or a name"
            raise UserError(f"unknown SoundFont {key!r}: give {choices} from "
                            f"{SOUNDFONTS_CSV.name} ({', '.join(font.name for font in catalogue)})")
    unique = list(dict.fromkeys(fonts))
    if len(unique) < len(fonts):  # clip i plays font i mod n: a font named twice would be dropped in silence
        twice = next(font.name for font in unique if fonts.count(font) > 1)
        raise UserError(f"SoundFont {twice} is named twice" + (" ('all' names every font of the catalogue)" if any(
            str(spec).strip().lower() == "all" for spec in specs) else "") + ": name each font once")
    names = [font.name for font in unique]
    clash = sorted({name for name in names if names.count(name) > 1})
    if clash:
        raise UserError(f"two different SoundFonts are both called {clash[0]!r}; rename one file")
    return tuple(unique)

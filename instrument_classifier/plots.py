"""Plotting shared by the stages: note names, the pitch axis, the chromagram colour map, a figure.

Everything draws on a matplotlib :class:`~matplotlib.figure.Figure` with the
Agg canvas (no pyplot: no global state, no display needed).  The features'
example plot (``extract_features.py --plot``), the error analysis' clip plots
and the web app's chromagram image label the pitch axis the same way: the C
of each octave (:func:`octave_ticks`), named by :func:`note_name`, in the
colour map :data:`CHROMAGRAM_COLORMAP`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .cli import atomic_path
from .defaults import DEFAULT_FAMILIES

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# The colour map of every chromagram picture: 0 (silence) black, 1 (0 dB) pale yellow.
CHROMAGRAM_COLORMAP = "magma"


def note_name(midi: int) -> str:
    """Scientific pitch name of a MIDI number: 21 -> 'A0', 60 -> 'C4'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def octave_ticks(pitches: np.ndarray) -> list[int]:
    """The bins whose pitch is a C (the C of each octave), for the pitch axis.

    ``pitches``: the MIDI pitch of each bin (``extractor.bin_pitches()``).
    """
    return [b for b, p in enumerate(pitches) if p == int(p) and int(p) % 12 == 0]


def figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas, constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@functools.cache
def colormap_table() -> np.ndarray:
    """:data:`CHROMAGRAM_COLORMAP` as a (256, 3) uint8 lookup table."""
    from matplotlib import colormaps

    return (colormaps[CHROMAGRAM_COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def plot_examples(chromagrams: np.ndarray, parameters: pd.DataFrame, extractor, path: str | os.PathLike) -> Path:
    """Write a PNG grid with the first chromagram of each family.

    Parameters
    ----------
    chromagrams : np.ndarray [shape=(N, n_frames, n_bins)], rows matching ``parameters``
    parameters : DataFrame with columns sample_id, family_name, midi_number
    extractor : the :class:`features.ChromagramExtractor` that made them (for the axes)
    path : the PNG to write (atomically)
    """
    families = list(dict.fromkeys(parameters["family_name"]))
    families.sort(key=lambda f: (DEFAULT_FAMILIES.index(f) if f in DEFAULT_FAMILIES else len(DEFAULT_FAMILIES), f))
    cols = min(4, len(families))
    rows = -(-len(families) // cols)
    fig = figure(4 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    n_frames, n_bins = chromagrams.shape[1:]
    hop_seconds = extractor.hop_size / extractor.sample_rate
    first_time = extractor.block_size / 2 / extractor.sample_rate
    pitches = extractor.bin_pitches()
    ticks = octave_ticks(pitches)
    image = None
    for ax in axes.flat[len(families):]:
        ax.set_axis_off()
    for ax, family in zip(axes.flat, families):
        index = int(np.flatnonzero((parameters["family_name"] == family).to_numpy())[0])
        row = parameters.iloc[index]
        image = ax.imshow(chromagrams[index].T, origin="lower", aspect="auto", cmap=CHROMAGRAM_COLORMAP,
                          vmin=0, vmax=1, interpolation="nearest",
                          extent=(first_time - hop_seconds / 2, first_time + (n_frames - 0.5) * hop_seconds,
                                  -0.5, n_bins - 0.5))
        ax.set_yticks(ticks, [note_name(int(pitches[b])) for b in ticks])
        ax.set_xlabel("time [s]")
        ax.set_ylabel(f"pitch (bottom bin {note_name(int(pitches[0]))})")
        ax.set_title(f"{family}: {note_name(int(row['midi_number']))} (sample {row['sample_id']})", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8,
                 label=f"level, 0 = {extractor.floor_db:g} dB, 1 = {extractor.top_db:g} dB")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    return path

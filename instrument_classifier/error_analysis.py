"""Listen to a model's mistakes: the misclassified clips of one split, on one page.

``analyze_errors(MODEL_DIR)`` writes ``MODEL_DIR/evaluation/errors/``::

    index.html                               per clip: an audio player, the chromagram, the probabilities
    errors.csv                               the misclassified rows of predictions.csv
    <sample_id>-true-<class>-pred-<class>.flac   a copy of each clip, named by its true and predicted class
    <same name>.png                          its chromagram beside the predicted probabilities

The folder is built aside and renamed into place, so re-running replaces it
whole.  ``play_clips`` plays the copies in order with the first audio player
found (ffplay, paplay, pw-play, aplay, afplay).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from .cli import UserError, atomic_dir
from .dataset import PARAMETERS_CSV, soundfile_path
from .feature_store import features_identity, load_dataset_features
from .features import ChromagramExtractor
from .metrics import read_predictions
from .model_files import (CONFIG_JSON, EVALUATION_DIR, INDEX_HTML, PREDICTIONS_CSV, check_own_dataset,
                          read_model_records)
from .pages import render_page
from .plots import CHROMAGRAM_COLORMAP, figure, note_name, octave_ticks
from .training_data import SPLITS

ERRORS_DIR = "errors"
DPI = 80  # of the pictures: 720 x 256 pixels
ERRORS_CSV = "errors.csv"
# Command lines of the players we know, in order of preference; the clip path goes last.
# aplay reads only WAV, so clips are converted for it.
PLAYERS = (
    ("ffplay", ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error"]),
    ("paplay", ["paplay"]),
    ("pw-play", ["pw-play"]),
    ("aplay", ["aplay", "-q"]),
    ("afplay", ["afplay"]),
)


def _safe(name: str) -> str:
    """A class name as a file-name fragment."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)) or "_"


def error_file_stem(sample_id, true: str, predicted: str) -> str:
    """``000123-true-piano-pred-organ``: the name says what went wrong."""
    sample = f"{int(sample_id):06d}" if str(sample_id).isdigit() else _safe(sample_id)
    return f"{sample}-true-{_safe(true)}-pred-{_safe(predicted)}"


def find_player() -> tuple[str, list[str]]:
    """The first audio player on PATH; UserError when there is none."""
    for name, command in PLAYERS:
        if shutil.which(command[0]):
            return name, command
    raise UserError("cannot play audio: no audio player found on this machine "
                    f"(looked for {', '.join(name for name, _ in PLAYERS)})")


class ErrorPlot:
    """The chromagram (time across, pitch up) beside a bar chart of the probabilities, one PNG per clip.

    One figure is built and laid out once, and what stays the same for every
    clip (axes, colour bar, labels) is drawn once; a clip's picture restores
    that and draws only what changes: the chromagram, the bars, the class
    names in their order, the title, and the axes' frames that overlap them
    (drawn after them, as a full draw would).  A test split can hold hundreds
    of errors, and matplotlib's layout and text drawing were most of the
    page's time (363 pictures: 24.0 s instead of 68.8 s; README, Stage 6).

    ``class_names``: the bars; ``pitches``: the MIDI pitch of each chromagram
    bin (``extractor.bin_pitches()``), for the axis.
    """

    def __init__(self, class_names: list[str], pitches: np.ndarray, n_frames: int):
        self.fig = figure(9, 3.2)
        chroma_ax, self.proba_ax = self.fig.subplots(1, 2, width_ratios=(2.2, 1))
        self.image = chroma_ax.imshow(np.zeros((len(pitches), n_frames)), origin="lower", aspect="auto",
                                      cmap=CHROMAGRAM_COLORMAP, vmin=0, vmax=1, interpolation="nearest")
        ticks = octave_ticks(pitches)
        chroma_ax.set_yticks(ticks, [note_name(int(pitches[b])) for b in ticks])
        chroma_ax.set_xlabel("time frame")
        chroma_ax.set_ylabel("pitch")
        self.fig.colorbar(self.image, ax=chroma_ax, shrink=0.8)
        self.bars = self.proba_ax.barh(range(len(class_names)), np.zeros(len(class_names)), color="tab:blue")
        self.proba_ax.set_yticks(range(len(class_names)), list(class_names), fontsize=8)
        self.proba_ax.set_xlim(0, 1)
        self.proba_ax.set_xlabel("probability")
        # Laid out once, for a title as tall and as low as any (letters, digits, brackets, underscores), then
        # frozen: every clip's picture has the same layout whatever its title or the order of its bars.
        self.title = self.fig.suptitle("(|)_gjpqy Mg0", fontsize=10)
        self.fig.set_dpi(DPI)
        self.fig.savefig(io.BytesIO(), dpi=DPI)
        self.fig.set_layout_engine("none")
        # What changes from clip to clip, in the order a full draw paints it; the rest is drawn once, below.
        self.changing = [self.image, *chroma_ax.spines.values(), *self.bars, *self.proba_ax.spines.values(),
                         self.proba_ax.yaxis, self.title]
        for artist in self.changing:
            artist.set_animated(True)
        self.fig.canvas.draw()
        self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def save(self, chromagram: np.ndarray, probabilities: pd.Series, title: str, path: Path) -> None:
        """Write one clip's PNG: ``probabilities`` indexed by class name, drawn in ascending order."""
        from matplotlib.image import imsave

        order = probabilities.sort_values()
        self.image.set_data(chromagram.T)
        for bar, value in zip(self.bars, order.to_numpy()):
            bar.set_width(value)
        self.proba_ax.set_yticks(range(len(order)), list(order.index), fontsize=8)
        self.title.set_text(title)
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        for artist in self.changing:
            self.fig.draw_artist(artist)
        imsave(path, np.asarray(canvas.buffer_rgba()), format="png", dpi=DPI)


def analyze_errors(model_dir: str | os.PathLike, *, split: str = "test", quiet: bool = False) -> Path:
    """Write ``MODEL_DIR/evaluation/errors/`` for the misclassified clips of ``split``; return its index.html.

    ``split`` is train, valid, test or all.
    """
    if split not in (*SPLITS, "all"):
        raise UserError(f"unknown split {split!r} (choose from: {', '.join(SPLITS)}, all)")
    bundle = read_model_records(model_dir)  # the network is not needed: its predictions are in predictions.csv
    model_dir = bundle.model_dir
    predictions = read_predictions(model_dir / PREDICTIONS_CSV, bundle.class_names, splits=SPLITS)
    if not bundle.config.get("dataset"):
        raise UserError(f"{model_dir / CONFIG_JSON} names no dataset; its clips are needed to listen to the errors")
    dataset_dir = Path(bundle.config["dataset"])
    if not (dataset_dir / PARAMETERS_CSV).is_file():
        raise UserError(f"the model's dataset {dataset_dir} is gone; its clips are needed to listen to the errors")
    chromagrams, sample_ids, parameters, _ = load_dataset_features(dataset_dir)
    check_own_dataset(bundle.config, features_identity(dataset_dir))  # else the clips are not those predicted
    parameters = parameters.set_index("sample_id", drop=False)
    row_of = {sid: i for i, sid in enumerate(sample_ids.tolist())}
    pitches = ChromagramExtractor.from_params(bundle.feature_params).bin_pitches()
    plot = ErrorPlot(bundle.class_names, pitches, chromagrams.shape[1])

    chosen = predictions if split == "all" else predictions[predictions["split"] == split]
    errors = chosen[~chosen["correct"].astype(bool)].sort_values("sample_id")
    proba_columns = [f"p_{name}" for name in bundle.class_names]
    out_dir = model_dir / EVALUATION_DIR / ERRORS_DIR
    entries = []
    with atomic_dir(out_dir, overwrite=True) as tmp:
        errors.to_csv(tmp / ERRORS_CSV, index=False)
        proba = errors[proba_columns].to_numpy(dtype=float)
        for row, row_proba in tqdm(zip(errors.itertuples(index=False), proba), total=len(errors), unit="clip",
                                   desc="misclassified clips", disable=True if quiet else None):
            if row.sample_id not in parameters.index or row.sample_id not in row_of:
                raise UserError(f"sample {row.sample_id} of {PREDICTIONS_CSV} is not in {dataset_dir}; "
                                f"was the dataset regenerated?")
            source = dataset_dir / parameters.loc[row.sample_id, "audio_file"]
            if not source.is_file():
                raise UserError(f"clip not found: {source}")
            try:  # the header only: the page is for listening, a clip that is not audio is of no use there
                sf.info(soundfile_path(source))
            except (sf.LibsndfileError, RuntimeError) as error:
                raise UserError(f"clip {source} is not readable audio ({str(error).splitlines()[0]}); "
                                "was the dataset changed since its features were extracted?") from None
            stem = error_file_stem(row.sample_id, row.true, row.predicted)
            audio_name = stem + source.suffix
            shutil.copyfile(source, tmp / audio_name)
            probabilities = pd.Series(row_proba, index=bundle.class_names)
            details = parameters.loc[row.sample_id]
            title = (f"sample {row.sample_id}: {details.get('instrument_name', details.get('instrument_id', ''))} "
                     f"(MIDI {details['midi_number']}), true {row.true}, predicted {row.predicted}")
            plot.save(chromagrams[row_of[row.sample_id]], probabilities, title, tmp / f"{stem}.png")
            entries.append((row, audio_name, f"{stem}.png", probabilities, title))
        (tmp / INDEX_HTML).write_text(_index_page(model_dir, split, len(chosen), entries))
    if not quiet:
        print(f"{len(errors)} of {len(chosen)} {split} clips misclassified; listen: {out_dir / INDEX_HTML}")
    return out_dir / INDEX_HTML


def _index_page(model_dir: Path, split: str, n_split: int, entries: list) -> str:
    """The listening page (``templates/errors.html``): per clip a player, the top three probabilities, the plot."""
    clips = [{"title": title, "audio": audio, "image": image, "sample_id": row.sample_id,
              "top": list(probabilities.sort_values(ascending=False).head(3).items())}
             for row, audio, image, probabilities, title in entries]
    return render_page("errors.html", model_id=model_dir.name, split=split, n_split=n_split, clips=clips,
                       evaluation_page=INDEX_HTML)


def play_clips(errors_dir: str | os.PathLike, *, player: tuple[str, list[str]] | None = None) -> int:
    """Play the clips of an errors folder in name order; return how many were played."""
    name, command = player or find_player()
    clips = sorted(p for p in Path(errors_dir).iterdir() if p.suffix in (".flac", ".wav", ".ogg"))
    for clip in clips:
        print(f"playing {clip.name}", flush=True)
        if name == "aplay" and clip.suffix != ".wav":
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "clip.wav"
                audio, rate = sf.read(soundfile_path(clip))
                sf.write(wav, audio, rate)
                _run_player(name, command, wav)
        else:
            _run_player(name, command, clip)
    return len(clips)


def _run_player(name: str, command: list[str], path: Path) -> None:
    try:
        result = subprocess.run([*command, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except OSError as error:
        raise UserError(f"cannot play audio with {name}: {error}") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no audio device?"])[-1]
        raise UserError(f"cannot play audio with {name} (exit {result.returncode}): {reason}")

"""evaluate.py --recordings: a model scored on a folder of labelled recordings, each read as predict.py reads it.

The recordings here are the tiny dataset's own clips sorted into class
folders, some re-encoded at another rate or in stereo: what is tested is the
path a user's recordings take, not how good the tiny model is.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import evaluate
from conftest import assert_one_line_error, run_script
from instrument_classifier.audio import resample


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """The tiny model, copied: evaluate.py writes into its folder."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("evaluation"))


@pytest.fixture
def recordings(tiny_model_dir, tmp_path):
    """my-recordings/<family>/...: 14 clips of the tiny dataset (two of each family), some as a user's files are;
    and what a user's folder holds beside them."""
    dataset = tiny_model_dir.parent.parent
    parameters = pd.read_csv(dataset / "parameters.csv")
    folder = tmp_path / "my-recordings"
    for family, clips in parameters.groupby("family_name"):
        for k, row in enumerate(clips.head(2).itertuples()):
            audio, rate = sf.read(dataset / row.audio_file, dtype="float32")
            # Upper case, a sub-folder, another rate and two channels: all read as predict.py reads them.
            target = folder / (family.capitalize() if k else family) / ("take-2" if k else "") / f"{family}-{k}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if k:
                sf.write(target.with_suffix(".wav"), np.stack([audio, audio], axis=1), rate)
            else:
                sf.write(target.with_suffix(".flac"), resample(audio, rate, 22_050), 22_050)
    (folder / "drums").mkdir()
    shutil.copy(dataset / parameters["audio_file"][0], folder / "drums" / "kick.flac")  # not a class
    shutil.copy(dataset / parameters["audio_file"][0], folder / "loose.flac")  # in no class folder
    (folder / "piano" / "broken.wav").write_bytes(b"RIFF" + bytes(40))  # cannot be read
    (folder / "README.txt").write_text("recorded in my room")  # not audio: skipped unsaid
    (folder / ".hidden").mkdir()
    shutil.copy(dataset / parameters["audio_file"][0], folder / ".hidden" / "piano.flac")
    return folder


def test_a_model_is_scored_on_labelled_recordings_as_predict_reads_them(model_copy, recordings, predictor, capsys):
    status, out, err = run_script(evaluate, [model_copy, "--recordings", recordings], capsys)
    assert status == 0, err
    report = model_copy / "evaluation" / "my-recordings"
    predictions = pd.read_csv(report / "predictions.csv", keep_default_na=False)
    expected = sorted(p.relative_to(recordings).as_posix() for p in recordings.glob("[A-Za-z]*/**/*-[01].*")
                      if p.parent.name != "drums")
    assert list(predictions["file"]) == expected and list(predictions["sample_id"]) == list(range(14))
    assert list(predictions["true"]) == [f.split("/")[0].lower() for f in expected]
    for row in predictions.itertuples():  # the answers predict.py gives for the same files
        result = predictor.predict_file(recordings / row.file)
        assert row.predicted == result.label and row.correct == (result.label == row.true)
        for name, p in result.probabilities.items():
            assert getattr(row, f"p_{name}") == pytest.approx(p, abs=1e-6)
        assert row.warnings == "; ".join(result.warnings)
    metrics = pd.read_csv(report / "metrics.csv")
    assert (metrics["split"].tolist(), metrics["n"].tolist()) == (["all"], [14])
    assert metrics["error"][0] == pytest.approx(1 - predictions["correct"].mean())
    assert (report / "index.html").is_file() and (report / "confusion_all.png").is_file()
    assert f"error {metrics['error'][0]:.2%}" in out and str(report / "index.html") in out
    warnings = [line for line in err.splitlines() if "warning:" in line]  # beside the progress bar
    assert len(warnings) == 3, err
    assert "left out 1 file in drums/, not a class of the model (brass, " in warnings[0]
    assert "left out 1 file directly in the folder: put each in a class folder" in warnings[1]
    assert "left out 1 file that could not be read (the first: " in warnings[2] and "broken.wav" in warnings[2]
    # The model's own report links to it; its own figures are left as they were.
    assert not (model_copy / "evaluation" / "metrics.csv").exists()


def test_recordings_get_a_column_of_the_generalisation_report(model_copy, recordings, capsys):
    status, _, _ = run_script(evaluate, [model_copy, "--recordings", recordings, "--report",
                                         recordings.parent / "report", "-q"], capsys)
    assert status == 0
    table = pd.read_csv(recordings.parent / "report" / "generalisation.csv")
    predictions = pd.read_csv(model_copy / "evaluation" / "my-recordings" / "predictions.csv")
    assert table["my-recordings: all"][0] == pytest.approx(1 - predictions["correct"].mean(), abs=1e-4)


def test_bad_recordings_folders_are_one_line_before_anything_is_written(model_copy, tiny_model_dir, tmp_path,
                                                                        capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "unsorted").mkdir()
    shutil.copy(next((tiny_model_dir.parent.parent / "audio").glob("*.flac")), tmp_path / "unsorted" / "a.flac")
    (tmp_path / "file.wav").write_bytes(b"")
    cases = [(tmp_path / "missing", "recordings folder"),
             (tmp_path / "file.wav", "is not a folder of recordings"),
             (tiny_model_dir.parent.parent, "is a dataset: give it with --dataset"),
             (tmp_path / "empty", "holds no audio file in a folder named after a class of the model (brass, "),
             (tmp_path / "unsorted", "put each recording in FOLDER/<class>/")]
    for folder, message in cases:
        assert_one_line_error(*run_script(evaluate, [model_copy, "--recordings", folder], capsys)[::2], message)
    assert not (model_copy / "evaluation").exists()
    same_name = tmp_path / "other" / "empty"
    same_name.mkdir(parents=True)
    assert_one_line_error(*run_script(evaluate, [model_copy, "--recordings", tmp_path / "empty", same_name],
                                      capsys)[::2], "two datasets named 'empty'")

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
from conftest import assert_one_line_error, run_script, train_tiny_model
from instrument_classifier.audio import resample

RATE = 44_100


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
    (folder / "piano" / "take.m4a").write_bytes(b"\0" * 100)  # a format libsndfile does not read: said so
    sf.write(folder / "piano" / "silence.wav", np.zeros(RATE), RATE)  # no note: left out, not scored
    (folder / "README.txt").write_text("recorded in my room")  # not audio, not in a class folder: unsaid
    (folder / ".hidden").mkdir()
    shutil.copy(dataset / parameters["audio_file"][0], folder / ".hidden" / "piano.flac")
    # A sample library linked in as a class folder is read like any other (and a link back up, once).
    library = tmp_path / "library" / "more-violins"
    library.mkdir(parents=True)
    violin = parameters[parameters["family_name"] == "strings"]["audio_file"].iloc[2]
    shutil.copy(dataset / violin, library / "violin.flac")
    (library / "loop").symlink_to(folder)
    (folder / "strings" / "linked").symlink_to(library)
    return folder


def test_a_model_is_scored_on_labelled_recordings_as_predict_reads_them(model_copy, recordings, predictor, capsys):
    status, out, err = run_script(evaluate, [model_copy, "--recordings", recordings], capsys)
    assert status == 0, err
    report = model_copy / "evaluation" / "my-recordings"
    predictions = pd.read_csv(report / "predictions.csv", keep_default_na=False)
    expected = sorted([p.relative_to(recordings).as_posix() for p in recordings.glob("[A-Za-z]*/**/*-[01].*")
                       if p.parent.name != "drums"] + ["strings/linked/violin.flac"])
    assert list(predictions["file"]) == expected
    assert list(predictions["true"]) == [f.split("/")[0].lower() for f in expected]
    # Numbered among every file under the folder, in path order, whichever the model scored.
    every = sorted([p.relative_to(recordings).as_posix() for p in recordings.rglob("*")
                    if p.is_file() and ".hidden" not in p.parts] + ["strings/linked/violin.flac"])
    assert list(predictions["sample_id"]) == [every.index(f) for f in expected]
    for row in predictions.itertuples():  # the answers predict.py gives for the same files
        result = predictor.predict_file(recordings / row.file)
        assert row.predicted == result.label and row.correct == (result.label == row.true)
        for name, p in result.probabilities.items():
            assert getattr(row, f"p_{name}") == pytest.approx(p, abs=1e-6)
        assert row.warnings == "; ".join(result.warnings)
    metrics = pd.read_csv(report / "metrics.csv")
    assert (metrics["split"].tolist(), metrics["n"].tolist()) == (["all"], [15])
    assert metrics["error"][0] == pytest.approx(1 - predictions["correct"].mean())
    assert (report / "index.html").is_file() and (report / "confusion_all.png").is_file()
    assert f"error {metrics['error'][0]:.2%}" in out and str(report / "index.html") in out
    warnings = [line for line in err.splitlines() if "warning:" in line]  # beside the progress bar
    assert len(warnings) == 5, err
    assert warnings[0].endswith("left out 1 audio file in drums/, not a class of the model")
    assert warnings[1].endswith("left out 1 audio file directly in the folder (put each in a class folder)")
    assert warnings[2].endswith("left out 1 file of the class folders that are not audio predict.py reads (.m4a; "
                                "listed in left_out.csv)")
    assert warnings[3].endswith("left out 1 file of the class folders that could not be read (piano/broken.wav: "
                                "not an audio file or corrupt (Format not recognised.); listed in left_out.csv)")
    assert warnings[4].endswith("left out 1 file of the class folders that are silent, no note to classify "
                                "(piano/silence.wav: silent clip: there is no note to classify, the label means "
                                "nothing; listed in left_out.csv)")
    left_out = pd.read_csv(report / "left_out.csv")
    assert list(left_out["file"]) == ["piano/broken.wav", "piano/silence.wav", "piano/take.m4a"]
    assert list(left_out["kind"]) == ["unreadable", "silent", "not audio"]
    assert "unsupported file type .m4a" in left_out["reason"].iloc[2]
    assert "100%" in err  # the progress bar's end
    # Only the recordings' report: the model's own figures are left as they were.
    assert not (model_copy / "evaluation" / "metrics.csv").exists()


def test_two_models_pair_up_on_the_same_recordings(model_copy, recordings, tiny_dataset, tmp_path, capsys):
    """Two models' answers on one folder are compared clip by clip (the report's paired table)."""
    second = train_tiny_model(tmp_path / "second", tiny_dataset, epochs=1)
    status, _, err = run_script(evaluate, [model_copy, second, "--recordings", recordings, "--report",
                                           tmp_path / "report"], capsys)
    assert status == 0
    # Both models leave the same files out: each is said once, not once a model.
    assert err.count("in drums/, not a class of the model") == 1
    paired = pd.read_csv(tmp_path / "report" / "generalisation_paired.csv")
    assert list(paired["part"]) == ["my-recordings"] and paired["n"][0] == 15


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
             ("", "the recordings folder is an empty path"),
             (model_copy / "evaluation" / "mine", "lies inside the model folder"),
             (tmp_path / "file.wav", "is not a folder of recordings"),
             (tiny_model_dir.parent.parent, "is a dataset: give it with --dataset"),
             (tmp_path / "empty", "holds no file in a folder named after a class of the model (brass, "),
             (tmp_path / "unsorted", "put each recording in FOLDER/<class>/")]
    for folder, message in cases:
        assert_one_line_error(*run_script(evaluate, [model_copy, "--recordings", folder], capsys)[::2], message)
    assert not (model_copy / "evaluation").exists()
    # A folder of nothing readable, after one that is fine: found before anything is written.
    (tmp_path / "fine" / "strings").mkdir(parents=True)
    shutil.copy(tmp_path / "unsorted" / "a.flac", tmp_path / "fine" / "strings" / "a.flac")
    (tmp_path / "junk" / "strings").mkdir(parents=True)
    (tmp_path / "junk" / "strings" / "a.wav").write_bytes(b"")
    status, _, err = run_script(evaluate, [model_copy, "--recordings", tmp_path / "fine", tmp_path / "junk",
                                           "-q"], capsys)
    assert_one_line_error(status, err, "none of the 1 file of", "a.wav: empty file")
    assert not (model_copy / "evaluation" / "fine").exists()
    # A folder with no name (the root) would have had evaluation/ itself, the model's own report, as its report.
    assert_one_line_error(*run_script(evaluate, [model_copy, "--recordings", "/"], capsys)[::2],
                          "/ has no folder name to give its report")
    # A generalisation report inside a model folder: the model's reports would later delete its tables.
    assert_one_line_error(*run_script(evaluate, [model_copy, "--recordings", tmp_path / "fine", "--report",
                                                 model_copy / "evaluation" / "r"], capsys)[::2],
                          "lies inside the model folder")
    assert not (model_copy / "evaluation").exists()
    same_name = tmp_path / "other" / "empty"
    same_name.mkdir(parents=True)
    assert_one_line_error(*run_script(evaluate, [model_copy, "--recordings", tmp_path / "empty", same_name],
                                      capsys)[::2], "two datasets named 'empty'")


def test_a_folder_linked_under_two_classes_is_refused(model_copy, recordings, capsys):
    """Its files took the class of whichever link the walk met first, and the other class lost them, unsaid."""
    (recordings / "strings" / "more").symlink_to(recordings / "reed")
    status, _, err = run_script(evaluate, [model_copy, "--recordings", recordings], capsys)
    assert_one_line_error(status, err, "belong to two classes, reed and strings")
    assert not (model_copy / "evaluation").exists()


def test_a_report_replacing_another_keeps_none_of_its_figures(model_copy, recordings, capsys):
    """A dataset's report under the same name had an error by pitch and by font; recordings have neither."""
    report = model_copy / "evaluation" / "my-recordings"
    report.mkdir(parents=True)
    for name in ("error_by_pitch.csv", "error_by_pitch.png", "error_by_soundfont.csv"):
        (report / name).write_text("of other clips")
    (report / "my-notes.csv").write_text("a user's")
    assert run_script(evaluate, [model_copy, "--recordings", recordings, "-q"], capsys)[0] == 0
    assert not [p.name for p in report.glob("error_by_*")]
    assert (report / "predictions.csv").is_file() and (report / "left_out.csv").is_file()
    assert (report / "my-notes.csv").is_file()  # only the report's own kinds of file go
    # The model's own report, written again, leaves the sub-reports, the error listing and a user's file alone.
    (model_copy / "evaluation" / "errors").mkdir()
    (model_copy / "evaluation" / "errors" / "errors.csv").write_text("x")
    (model_copy / "evaluation" / "notes.csv").write_text("mine")
    assert run_script(evaluate, [model_copy, "-q"], capsys)[0] == 0
    assert (model_copy / "evaluation" / "errors" / "errors.csv").is_file() and (report / "index.html").is_file()
    assert (model_copy / "evaluation" / "notes.csv").is_file()

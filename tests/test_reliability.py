"""Careless and hostile input to the stages (issue 13): one line, a non-zero exit, nothing destroyed.

Each test is one of the issue's probes with the answer it must get: a
damaged model folder, numbers that are not numbers, an output path that
holds something else, a FIFO among the clips, a corrupt artifact that looked
up to date.  They run the stages' real ``main`` (or the script itself where
the process matters: Ctrl-C, a closed stdout) on a copy of the session's tiny
dataset and model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analyze_errors
import evaluate
import extract_features
import fluidsynth_wrapper
import generate_audio_samples
import generate_chords
import leaderboard
import predict
import predict_webapp
import prepare_training
import render_note
import train
from conftest import assert_one_line_error, run_script
from instrument_classifier.cli import (UMASK, Terminated, UserError, atomic_dir, atomic_files, atomic_path,
                                      signals_between_steps)
from instrument_classifier.dataset import SingleToneDataset
from instrument_classifier.feature_store import load_features
from instrument_classifier.soundfonts import resolve_soundfont

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def dataset(tiny_dataset, tmp_path) -> Path:
    """A writable copy of the tiny dataset (no features)."""
    return Path(shutil.copytree(tiny_dataset, tmp_path / "dataset"))


def one_line_error(capsys, status: int, *fragments: str, code: int = 2) -> str:
    """Assert ``status`` is ``code`` and stderr is one error line holding every fragment; return it."""
    err = capsys.readouterr().err
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def copy_model(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / model_dir.name, ignore=shutil.ignore_patterns("evaluation")))


def edit_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))


# ---------------------------------------------------------------------------
# Item 8: a damaged model folder, for predict.py and the web app alike


def set_config_to_a_list(folder):
    (folder / "config.json").write_text("[]")


def set_level_range_to_text(folder):
    edit_json(folder / "preprocessing.json", lambda r: {**r, "peak_dbfs_range": ["a", "b"]})


def set_sample_rate_to_1e12(folder):  # once allocated 7 TiB for the first clip
    edit_json(folder / "preprocessing.json", lambda r: {**r, "features": {**r["features"], "sample_rate": 10**12}})


def set_block_to_6_s(folder):  # a window longer than any clip
    edit_json(folder / "preprocessing.json", lambda r: {**r, "features": {**r["features"], "block_size": 2**18}})


def set_gate_to_1e308(folder):  # an OverflowError traceback
    edit_json(folder / "preprocessing.json", lambda r: {**r, "features": {**r["features"], "gate_db": 1e308}})


def set_hop_to_1024(folder):
    edit_json(folder / "preprocessing.json", lambda r: {**r, "features": {**r["features"], "hop_size": 1024}})


def repeat_a_class_name(folder):  # was accepted: every probability under one name
    edit_json(folder / "preprocessing.json", lambda r: {**r, "class_names": ["a"] * len(r["class_names"])})


def empty_the_feature_parameters(folder):  # was read as the default extractor's
    edit_json(folder / "preprocessing.json", lambda r: {**r, "features": {}})


def set_the_dataset_to_a_number(folder):  # analyze_errors.py: a TypeError traceback
    edit_json(folder / "config.json", lambda r: {**r, "dataset": 5})


def truncate_the_model(folder):  # Keras said "File not found" of it
    model = folder / "model.keras"
    model.write_bytes(model.read_bytes()[:1000])


@pytest.mark.parametrize("damage, message", [
    (truncate_the_model, "model.keras: not a Keras model (a .keras file is a zip archive"),
    (set_config_to_a_list, "config.json: not a JSON object"),
    (set_level_range_to_text, "peak_dbfs_range must be two numbers"),
    (set_sample_rate_to_1e12, "feature sample_rate 1000000000000 Hz is outside"),
    (set_block_to_6_s, "feature block_size 262144 is longer than the 2 s clip"),
    (set_gate_to_1e308, "gate_db must be a number of dB within -1000..1000, got 1e+308"),
    (set_hop_to_1024, "chromagrams of shape (87, 115), the network takes (44, 115)"),
    (repeat_a_class_name, "preprocessing.json: class_names must be distinct names"),
    (empty_the_feature_parameters, "preprocessing.json: no feature parameters"),
    (set_the_dataset_to_a_number, "config.json: dataset must be a folder's path"),
])
def test_damaged_model_folder_is_one_line(tiny_model_dir, tmp_path, capsys, damage, message):
    broken = copy_model(tiny_model_dir, tmp_path)
    damage(broken)
    clip = next((tiny_model_dir.parent.parent / "audio").glob("*.flac"))
    one_line_error(capsys, predict.main(["-m", str(broken), str(clip)]), message)
    one_line_error(capsys, predict_webapp.main(["-m", str(broken), "--port", "0"]), message)


def test_web_app_on_a_host_that_does_not_resolve(tiny_model_dir, capsys):
    status = predict_webapp.main(["-m", str(tiny_model_dir), "--host", "no.such.host.invalid", "--port", "0"])
    one_line_error(capsys, status, "cannot listen on no.such.host.invalid:0")


@pytest.mark.parametrize("argv, message", [
    (["--learning-rate", "nan"], "--learning-rate must be a positive number up to 1e+06, got nan"),
    (["--learning-rate", "inf"], "--learning-rate must be a positive number up to 1e+06, got inf"),
    (["--learning-rate", "1e39"], "--learning-rate must be a positive number up to 1e+06, got 1e+39"),
    (["--patience", "-1"], "--patience must be 0"),
])
def test_training_refuses_numbers_that_cannot_train(tiny_model_dir, tmp_path, capsys, argv, message):
    """Refused before any work (inf once failed after 15 s of training, nan and -1 with a traceback)."""
    status = train.main([str(tiny_model_dir.parent.parent), *argv, "--models-dir", str(tmp_path / "models"), "-q"])
    one_line_error(capsys, status, message)
    assert not (tmp_path / "models").exists()


def nan_probability(folder):
    table = pd.read_csv(folder / "predictions.csv")
    table.loc[0, table.columns[table.columns.str.startswith("p_")][0]] = np.nan
    table.to_csv(folder / "predictions.csv", index=False)


def probability_above_one(folder):
    table = pd.read_csv(folder / "predictions.csv")
    table.loc[0, table.columns[table.columns.str.startswith("p_")][0]] = 1.5
    table.to_csv(folder / "predictions.csv", index=False)


def unknown_label(folder):
    table = pd.read_csv(folder / "predictions.csv")
    table.loc[0, "true"] = "banjo"
    table.to_csv(folder / "predictions.csv", index=False)


def no_validation_curves(folder):
    curves = pd.read_csv(folder / "learning_curves.csv")
    curves.drop(columns=[c for c in curves.columns if c.startswith("val_")]).to_csv(
        folder / "learning_curves.csv", index=False)


def no_correct_column(folder):
    table = pd.read_csv(folder / "predictions.csv")
    table.drop(columns="correct").to_csv(folder / "predictions.csv", index=False)


def no_predictions(folder):
    table = pd.read_csv(folder / "predictions.csv")
    table.head(0).to_csv(folder / "predictions.csv", index=False)


@pytest.mark.parametrize("script, damage, message", [
    (evaluate, nan_probability, "is nan, not a probability"),
    (analyze_errors, probability_above_one, "is 1.5, not a probability"),
    (analyze_errors, no_predictions, "predictions.csv holds no predictions"),  # said: correct must be True/False
    (evaluate, unknown_label, "true 'banjo' is not one of"),
    (evaluate, no_validation_curves, "learning_curves.csv lacks columns: val_"),
    (analyze_errors, no_correct_column, "predictions.csv lacks columns: correct"),
])
def test_damaged_training_results_are_one_line(tiny_model_dir, tmp_path, capsys, script, damage, message):
    broken = copy_model(tiny_model_dir, tmp_path)
    damage(broken)
    one_line_error(capsys, script.main([str(broken), "-q"]), message)
    assert not (broken / "evaluation").exists()


# ---------------------------------------------------------------------------
# Items 6 and 7: prepare_training.py neither destroys nor half-writes


def test_prepare_training_writes_only_where_it_may(tiny_model_dir, tmp_path, capsys):
    dataset = tiny_model_dir.parent.parent  # has features
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    one_line_error(capsys, prepare_training.main([str(dataset), "-o", str(a_file)]), "not a folder this stage wrote")
    one_line_error(capsys, prepare_training.main([str(dataset), "-o", str(a_file), "--overwrite"]))
    assert a_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.wav").write_bytes(b"x")
    for extra in ([], ["--overwrite"]):
        one_line_error(capsys, prepare_training.main([str(dataset), "-o", str(other), *extra]),
                       "holds files this stage did not write (keep.wav)")
    assert [p.name for p in other.iterdir()] == ["keep.wav"]

    ours = tmp_path / "empty"
    ours.mkdir()
    assert prepare_training.main([str(dataset), "-o", str(ours)]) == 0  # an empty folder is fine
    one_line_error(capsys, prepare_training.main([str(dataset), "-o", str(ours)]), "use --overwrite")
    assert prepare_training.main([str(dataset), "-o", str(ours), "--split", "instrument", "--overwrite"]) == 0
    assert json.loads((ours / "preprocessing.json").read_text())["split"] == "instrument"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt", "other"]


def test_prepare_training_refuses_nan_features_before_writing(tiny_model_dir, tmp_path, capsys):
    dataset = Path(shutil.copytree(tiny_model_dir.parent.parent, tmp_path / "dataset",
                                   ignore=shutil.ignore_patterns("models", "training-data")))
    npz = dataset / "features" / "chromagrams.npz"
    chromagrams, sample_id, _ = load_features(dataset)
    np.savez(npz, chromagrams=np.full_like(chromagrams, np.nan), sample_id=sample_id)
    import hashlib

    edit_json(dataset / "features" / "features.json",
              lambda r: {**r, "chromagrams_sha256": hashlib.sha256(npz.read_bytes()).hexdigest()})
    one_line_error(capsys, prepare_training.main([str(dataset)]),
                   f"{len(sample_id)} of {len(sample_id)} chromagrams", "NaN or infinity")
    assert not (dataset / "training-data").exists()
    assert not [p for p in dataset.iterdir() if p.name.startswith(".")]


def test_features_of_unusable_parameters_are_refused_before_training(tiny_model_dir, tmp_path, capsys):
    """A features.json whose parameters no extractor takes: the model trained on it was saved, then nothing could
    load it."""
    dataset = Path(shutil.copytree(tiny_model_dir.parent.parent, tmp_path / "dataset",
                                   ignore=shutil.ignore_patterns("models")))
    edit_json(dataset / "features" / "features.json", lambda r: {**r, "params": {**r["params"], "hop_size": 0}})
    for script in (prepare_training, train):
        one_line_error(capsys, script.main([str(dataset), "--overwrite"] if script is prepare_training
                                           else [str(dataset), "--epochs", "1", "-q"]),
                       "features.json: bad feature parameters: hop_size", "run extract_features.py --overwrite")
    assert not (dataset / "models").exists()
    # Parameters an extractor takes, but not those of the chromagrams stored (44 frames, not 87).
    edit_json(dataset / "features" / "features.json", lambda r: {**r, "params": {**r["params"], "hop_size": 1024}})
    one_line_error(capsys, train.main([str(dataset), "--epochs", "1", "-q"]),
                   "chromagrams.npz does not match", "features.json: run extract_features.py --overwrite")


# ---------------------------------------------------------------------------
# Items 10 and 11: extract_features.py


def test_a_fifo_among_the_clips_is_refused_at_once(dataset, capsys):
    """Opening a FIFO waits for a writer: it once hung the stage for 700 s, past the first Ctrl-C."""
    clip = sorted((dataset / "audio").glob("*.flac"))[3]
    clip.unlink()
    os.mkfifo(clip)
    run = subprocess.run([sys.executable, "extract_features.py", str(dataset), "-q"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"extract_features.py: error: audio clip {clip} is not a regular file (a pipe or a device?)"]
    assert not (dataset / "features").exists()
    clip.unlink()
    clip.mkdir()  # and a folder in a clip's place is named so
    assert extract_features.main([str(dataset), "-q"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"audio clip {clip} is a folder")
    assert not (dataset / "features").exists()


def test_ctrl_c_stops_extraction_at_once(dataset):
    """Ctrl-C while threads decode and transform: exit 130 within seconds, one line, no features."""
    parameters = pd.read_csv(dataset / "parameters.csv")
    many = pd.concat([parameters] * 400, ignore_index=True)  # 22,400 rows, the same 56 clips: ~50 s of work
    many["sample_id"] = range(len(many))
    many.to_csv(dataset / "parameters.csv", index=False)
    process = subprocess.Popen([sys.executable, "extract_features.py", str(dataset), "-q", "-j", "2"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # Ctrl-C as in a terminal: a background job (as CI may run us) ignores SIGINT.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    fds = Path(f"/proc/{process.pid}/fd")
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:  # until a thread has a clip open
        try:
            if any("/audio/" in os.readlink(fd) for fd in fds.iterdir()):
                break
        except OSError:
            pass
        time.sleep(0.005)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = process.communicate(timeout=60)
    stopped_after = time.monotonic() - start
    assert process.returncode == 130 and err.strip().splitlines() == ["extract_features.py: interrupted"]
    # ~0.1 s; a machine loaded by other work took 5 s once: the bound is "long before the work was done"
    assert stopped_after < 20, stopped_after
    assert not (dataset / "features").exists() or not any((dataset / "features").iterdir())


@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_a_damaged_feature_file_is_not_up_to_date(dataset, capsys, damage):
    """A corrupt chromagrams.npz was 'up to date' (exit 0), and the next stage failed on it."""
    assert extract_features.main([str(dataset), "-q"]) == 0
    npz = dataset / "features" / "chromagrams.npz"
    good = npz.read_bytes()
    if damage == "truncated":
        npz.write_bytes(good[:100])
    else:  # still a valid file of the right shape, other numbers
        chromagrams, sample_id, _ = load_features(dataset)
        np.savez(npz, chromagrams=chromagrams[::-1], sample_id=sample_id)
    with pytest.raises(UserError, match="chromagrams.npz changed since it was written"):
        load_features(dataset)
    assert extract_features.main([str(dataset)]) == 0
    assert "wrote 56 chromagrams" in capsys.readouterr().out
    assert npz.read_bytes() == good
    assert extract_features.main([str(dataset)]) == 0
    assert "up to date" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Item 12: the smaller ones


def test_leaderboard_counts_must_make_sense(tiny_model_dir, capsys):
    for argv in (["--top", "-1"], ["--top", "0"], ["--latest", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            leaderboard.main([str(tiny_model_dir.parent), *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"argument {argv[0]}: invalid value" in err


def test_leaderboard_names_an_unknown_target_or_split(tiny_model_dir, capsys):
    """It said 'no finished models ...; run train.py first', as if the name were right."""
    for argv in (["--target", "nosuch"], ["--split", "nosuch"]):
        with pytest.raises(SystemExit) as exit_info:
            leaderboard.main([str(tiny_model_dir.parent), "--best", *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"argument {argv[0]}: invalid choice: 'nosuch'" in err


def test_the_leaderboard_says_which_folders_it_skips(tiny_model_dir, tmp_path, capsys):
    """A folder with a corrupt config.json vanished from the count without a word ("best 1 of 1 models")."""
    models = tmp_path / "models"
    models.mkdir()
    good = copy_model(tiny_model_dir, tmp_path / "good").rename(models / "20990101-000000-x-s1")
    bad = copy_model(tiny_model_dir, tmp_path / "bad").rename(models / "20990101-000001-x-s1")
    (bad / "config.json").write_text("{")
    assert leaderboard.main([str(models)]) == 0
    out, err = capsys.readouterr()
    assert "best 1 of 1 models" in out and good.is_dir()
    assert err.count("\n") == 1 and f"warning: skipping model {bad}: cannot read its config.json" in err, err
    (bad / "config.json").write_text((good / "config.json").read_text())
    metrics = pd.read_csv(bad / "final_metrics.csv")
    metrics[metrics["split"] != "test"].to_csv(bad / "final_metrics.csv", index=False)
    assert leaderboard.main([str(models)]) == 0
    assert f"skipping model {bad}: its final_metrics.csv lacks 'test'" in capsys.readouterr().err
    shutil.copy(good / "final_metrics.csv", bad / "final_metrics.csv")
    for key in ("model_id", "created"):  # a list there stopped the ranking with a traceback
        edit_json(bad / "config.json", lambda config: {**json.loads((good / "config.json").read_text()), key: ["x"]})
        assert leaderboard.main([str(models), "--best"]) == 0
        out, err = capsys.readouterr()
        assert out.strip() == str(good) and f"skipping model {bad}: " in err and f"{key} is ['x'], not text" in err


def test_best_model_skips_a_folder_that_cannot_load(tiny_model_dir, tmp_path, capsys):
    good, bad = (copy_model(tiny_model_dir, tmp_path / name) for name in ("good", "bad"))
    models = tmp_path / "models"
    models.mkdir()
    good, bad = good.rename(models / "20990101-000000-x-s1"), bad.rename(models / "20990101-000001-x-s1")
    metrics = pd.read_csv(bad / "final_metrics.csv")
    metrics.loc[metrics["split"] == "valid", "error"] = 0.0  # the better one on paper
    metrics.to_csv(bad / "final_metrics.csv", index=False)
    archive = bytearray((bad / "model.keras").read_bytes())
    archive[len(archive) // 2] ^= 0xFF  # one flipped byte in the weights
    (bad / "model.keras").write_bytes(bytes(archive))
    assert leaderboard.main([str(models), "--best"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(good)
    assert err.count("\n") == 1 and f"warning: skipping model {bad}: model.keras is damaged (" in err, err
    with zipfile.ZipFile(good / "model.keras") as source:  # an archive without its weights is caught too
        kept = {name: source.read(name) for name in source.namelist() if name != "model.weights.h5"}
    with zipfile.ZipFile(good / "model.keras", "w") as target:
        for name, data in kept.items():
            target.writestr(name, data)
    assert leaderboard.main([str(models), "--best"]) == 2
    *warnings, error = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 2 and "model.keras lacks model.weights.h5" in warnings[1]
    assert error.endswith(f"error: no model of target family and split random in {models} can be loaded (see the warnings)")


@pytest.mark.parametrize("change, reason", [
    ({"class_names": ["brass", "brass"]}, "class_names must be distinct"),
    ({"class_names": "bgoppr"}, "class_names must be distinct names"),  # was taken for a class per letter
    ({"features": {}}, "no feature parameters"),
    ({"scaler": {"kind": "standard-scalar", "mean": 0.0, "std": 0.0}}, "invalid scaler std 0.0"),
    ({"scaler": {"kind": "standard-scalar", "mean": 0.0, "std": float("nan")}}, "invalid scaler std nan"),
    ({"scaler": {"kind": "standard-scalar", "mean": 0.1, "std": 1e-320}}, "invalid scaler std 1e-320"),
    # A mean of NaN or 1e308 gave every probability NaN, and an answer: silently.
    ({"scaler": {"kind": "standard-scalar", "mean": float("nan"), "std": 0.2}}, "invalid scaler mean nan"),
    ({"scaler": {"kind": "standard-scalar", "mean": 1e308, "std": 0.2}}, "invalid scaler mean 1e+308"),
    ({"peak_dbfs_range": [-10.0, -30.0]}, "peak_dbfs_range must be two numbers, low then high"),
    ({"peak_dbfs_range": "loud"}, "peak_dbfs_range must be two numbers"),
    ({"features": {"sample_rate": 10**12}}, "sample_rate 1000000000000 Hz is outside"),
    ({"features": {"tuning": "A"}}, "unknown feature parameters: tuning"),
])
def test_best_model_skips_what_prediction_would_refuse(tiny_model_dir, tmp_path, capsys, change, reason):
    """--best chose a folder that predict.py then refused, instead of the next model (two checks that drifted)."""
    models = tmp_path / "models"
    models.mkdir()
    good = copy_model(tiny_model_dir, tmp_path / "good").rename(models / "20990101-000000-x-s1")
    bad = copy_model(tiny_model_dir, tmp_path / "bad").rename(models / "20990101-000001-x-s1")
    metrics = pd.read_csv(bad / "final_metrics.csv")
    metrics.loc[metrics["split"] == "valid", "error"] = 0.0  # the better one on paper
    metrics.to_csv(bad / "final_metrics.csv", index=False)
    preprocessing = json.loads((bad / "preprocessing.json").read_text())
    (bad / "preprocessing.json").write_text(json.dumps({**preprocessing, **change}))
    assert leaderboard.main([str(models), "--best"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(good)
    assert err.count("\n") == 1 and f"skipping model {bad}: " in err and reason in err, err
    assert predict.main(["-m", str(bad), str(next((tiny_model_dir.parent.parent / "audio").glob("*.flac")))]) == 2
    assert reason in capsys.readouterr().err


def test_predict_with_stdout_closed_fails(tiny_model_dir):
    """`predict.py clip >&-` printed nothing and exited 0."""
    clip = next((tiny_model_dir.parent.parent / "audio").glob("*.flac"))
    run = subprocess.run(f'"{sys.executable}" predict.py -m "{tiny_model_dir}" "{clip}" >&-', shell=True, cwd=REPO,
                         capture_output=False, stderr=subprocess.PIPE, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["predict.py: error: standard output is closed: nowhere to print "
                                               "the labels"]


def test_duplicate_sample_ids_are_refused(dataset, capsys):
    parameters = pd.read_csv(dataset / "parameters.csv")
    parameters.loc[5, "sample_id"] = parameters.loc[4, "sample_id"]
    parameters.to_csv(dataset / "parameters.csv", index=False)
    with pytest.raises(UserError, match="sample_id 4 appears more than once"):
        SingleToneDataset(dataset)
    one_line_error(capsys, extract_features.main([str(dataset), "-q"]), "sample_id 4 appears more than once")


@pytest.mark.parametrize("column, value, message", [
    ("midi_number", "abc", "line 4 has midi_number abc, not a whole number 0..127"),
    ("midi_number", "200", "line 4 has midi_number 200, not a whole number 0..127"),
    ("instrument_id", "7.5", "line 4 has instrument_id 7.5, not a whole number 1..128"),
])
def test_a_bad_number_in_parameters_csv_is_one_line(dataset, capsys, column, value, message):
    """A midi_number of 'abc' went through extraction and preparation and broke the evaluation with a traceback."""
    parameters = pd.read_csv(dataset / "parameters.csv", dtype=str)
    parameters.loc[2, column] = value
    parameters.to_csv(dataset / "parameters.csv", index=False)
    one_line_error(capsys, extract_features.main([str(dataset), "-q"]), message)


def as_user(command: list[str]) -> list[str]:
    """``command`` run without root's power to read any file (tests run as root in CI), so chmod 000 denies."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]


def test_a_clip_the_system_will_not_open_says_why(dataset, tiny_model_dir, tmp_path):
    """libsndfile said "System error." of a file without read permission."""
    clip = sorted((dataset / "audio").glob("*.flac"))[3]
    clip.chmod(0)
    try:
        for script, args in (("predict.py", ["-m", str(tiny_model_dir), str(clip)]),
                             ("extract_features.py", [str(dataset), "-q", "-j", "1"])):
            run = subprocess.run(as_user([sys.executable, script, *args]), cwd=REPO, capture_output=True, text=True,
                                 timeout=300)
            assert run.returncode in (1, 2) and "Traceback" not in run.stderr
            assert f"{clip}: cannot read: Permission denied" in run.stderr or \
                f"cannot read audio clip {clip}: Permission denied" in run.stderr, run.stderr
    finally:
        clip.chmod(0o644)


def test_truncated_midi_and_soundfont_are_one_line_each(tiny_dataset, tmp_path, capfd):
    """The MIDI error had an empty reason; FluidSynth printed six lines about the SoundFont."""
    from instrument_classifier.synthesis import default_soundfont

    midi = next((tiny_dataset / "midi").glob("*.mid"))
    (tmp_path / "cut.mid").write_bytes(midi.read_bytes()[:30])
    status = fluidsynth_wrapper.main([str(tmp_path / "cut.mid"), str(tmp_path / "out.wav")])
    one_line_error(capfd, status, "cannot read MIDI file", "the file ends early (truncated?)")
    with open(default_soundfont(), "rb") as font:
        (tmp_path / "cut.sf2").write_bytes(font.read(100_000))
    status = fluidsynth_wrapper.main(["-s", str(tmp_path / "cut.sf2"), str(midi), str(tmp_path / "out.wav")])
    one_line_error(capfd, status, "cut.sf2 is truncated: its header says")
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("script, argv, message", [
    (render_note, ["--instrument", "1", "--soundfont", "all"], "--soundfont all names every font"),
    (render_note, ["--instrument", "1", "--bank", "3"], "FluidR3_GM has no preset 0"),
    (render_note, ["--instrument", "1", "--codec-quality", "5"], "give --codec mp3 too"),  # was ignored
    (render_note, ["--instrument", "1", "--noise-db", "nan"], "must be a finite number"),  # was: no noise
    (render_note, ["--instrument", "1", "--vibrato-cents", "20"], "does nothing without --vibrato-hz"),  # no vibrato
    (render_note, ["--instrument", "1", "--hum-hz", "60"], "--hum-hz does nothing without --hum-db"),
    (render_note, ["--instrument", "1", "--eq-highpass-hz", "2000", "--eq-lowpass-hz", "100"],
     "must be below eq_lowpass_hz (100)"),  # was: a clip of almost nothing
    (render_note, ["--instrument", "1", "--eq-highpass-hz", "500", "--eq-lowpass-hz", "500"],
     "must be below eq_lowpass_hz (500)"),
    (render_note, ["--instrument", "1", "--pitch", "-1"], "pitch '-1' is outside MIDI's 0..127"),
    (generate_chords, ["--beats", "inf"], "must be positive numbers"),
    (generate_chords, ["--beats", "1e-300"], "--beats must be at least 1/10080 (one MIDI tick)"),
    (generate_chords, ["--tempo", "1", "--beats", "1000000"], "at most 3600 s"),
    (generate_chords, ["--tempo", "100000000"], "--tempo must be at most 1000"),  # a file of 11 us, exit 0
    (generate_chords, ["-s", "all"], "--soundfont all names every font"),
    (generate_chords, ["-s", "{tmp}/random.sf2"], "not a SoundFont"),
])
def test_one_note_and_chord_scripts_refuse_before_writing(tmp_path, capfd, script, argv, message):
    """Each once crashed (a traceback, 7 TiB asked of numpy) or left its MIDI file behind without the audio."""
    (tmp_path / "random.sf2").write_bytes(np.random.default_rng(0).bytes(5000))
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    outputs = ["-o", str(tmp_path / "note.flac")] if script is render_note else \
        ["-o", str(tmp_path / "note.mid"), "--audio", str(tmp_path / "note.flac")]
    try:
        status = script.main([*outputs, *argv])
    except SystemExit as exit:  # argparse's own usage errors
        status = exit.code
    one_line_error(capfd, status, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["random.sf2"]


@pytest.mark.parametrize("argv, message", [
    (["-o", "{tmp}/c.wav", "--audio", "{tmp}/c.wav"], "-o is the MIDI file (c.wav): name it .mid"),
    (["-o", "{tmp}/c.mid", "--audio", "{tmp}/c.mid"], "the MIDI file and the audio file must differ"),
    (["-o", "{tmp}/c.mid", "-s", "TimGM6mb"], "--soundfont renders the --audio file: give --audio too"),
])
def test_the_chord_script_never_writes_its_midi_file_over_its_audio(tmp_path, capfd, argv, message):
    one_line_error(capfd, generate_chords.main([arg.format(tmp=tmp_path) for arg in argv]), message)
    assert list(tmp_path.iterdir()) == []


def test_an_audio_path_that_is_a_folder_leaves_no_midi_file(tmp_path, capfd):
    (tmp_path / "note.flac").mkdir()
    one_line_error(capfd, render_note.main(["-o", str(tmp_path / "note.flac"), "--instrument", "1"]), "it is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.flac"]


def test_a_midi_file_of_days_is_refused_not_rendered(tmp_path, capfd):
    import mido

    midi = mido.MidiFile()
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.Message("note_on", note=60, velocity=100, time=0))
    track.append(mido.Message("note_off", note=60, time=200_000_000))  # ~58 hours at 120 bpm
    midi.save(tmp_path / "long.mid")
    status = fluidsynth_wrapper.main([str(tmp_path / "long.mid"), str(tmp_path / "out.wav")])
    one_line_error(capfd, status, "lasts 208,333 s; at most 3600 s")
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("column", ["sample_id", "audio_file", "family_name"])
def test_a_blank_cell_in_parameters_is_one_line(dataset, capsys, column):
    parameters = pd.read_csv(dataset / "parameters.csv")
    parameters.loc[2, column] = None
    parameters.to_csv(dataset / "parameters.csv", index=False)
    one_line_error(capsys, extract_features.main([str(dataset), "-q"]), f"line 4 has no {column}")
    assert not (dataset / "features").exists()


@pytest.mark.parametrize("option, message", [
    ("filters=0", "option filters of architecture relative-harmonic must be at least 1, got 0"),
    ("dropout=1.5", "dropout .* must be in 0 to 0.95"),
    ("max_shift=-2", "max_shift .* must be at least 0"),      # was 82 lines of TensorFlow at the first step
    ("bn_momentum=2", "bn_momentum .* must be in 0 to 0.999"),  # was a NaN loss, then a traceback
    ("positions=200", "positions .* must be in 1 to 115"),
    ("lowpass_probability=2", "lowpass_probability .* must be in 0 to 1"),
    ("relative_db=-60", "relative_db .* must be in 0 to 120"),  # was a model that answers one class
    ("max_cut_db=1e308", "max_cut_db .* must be in 0 to 120"),   # was an overflow, then a word about the learning rate
    ("filters=true", "filters of architecture relative-harmonic must be a finite number, got True"),
    ("filters=Infinity", "must be a finite number, got inf"),    # was an OverflowError
    ("dropout=NaN", "must be a finite number, got nan"),        # passed the range check
    ("relative_db=\"x\"", r"must be a finite number \(or null: off\), got 'x'"),
    ("filters=64.5", "must be a whole number"),
    ("bogus=1", r"has no option 'bogus' \(its options: filters, span, positions"),
    ("seed=5", "has no option 'seed'"),                        # --seed sets it
    ("frames_per_template=100", "output size"),                 # Keras's own check of the shapes, in one line
])
def test_bad_model_options_are_one_line_naming_the_option(option, message):
    from instrument_classifier.models import build_model

    with pytest.raises(UserError, match=message):
        build_model("relative-harmonic", (44, 115, 1), 7, options=train.model_options([option]))
    assert build_model("reference", (44, 115, 1), 7).count_params() > 0
    with pytest.raises(UserError, match="architecture reference has no option 'filters' \\(its options: none\\)"):
        build_model("reference", (44, 115, 1), 7, options={"filters": 8})
    with pytest.raises(UserError, match="--model-option filters is given twice"):  # the last won, in silence
        train.model_options(["filters=10", "filters=20"])


def test_a_diverging_training_is_one_line_and_leaves_no_models_folder(tiny_model_dir, tmp_path, capsys):
    dataset = tiny_model_dir.parent.parent
    models = tmp_path / "new" / "models"
    status, _, err = run_script(train, [dataset, "--epochs", "2", "--learning-rate", "1e6", "--models-dir", models,
                                        "--no-evaluate", "-q"], capsys)
    assert_one_line_error(status, err, "training diverged: the ", "lower --learning-rate")
    assert not (tmp_path / "new").exists()


def test_a_failed_atomic_write_removes_the_folders_it_made_and_only_those(tmp_path):
    (tmp_path / "kept").mkdir()
    for writer, target in ((atomic_path, tmp_path / "kept" / "a" / "b" / "file.txt"),
                           (atomic_dir, tmp_path / "kept" / "c" / "d" / "folder")):
        with pytest.raises(RuntimeError):
            with writer(target):
                raise RuntimeError("the work failed")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
    with pytest.raises(RuntimeError):  # a report's folder (train.py killed while it evaluates): left empty
        with atomic_files(tmp_path / "kept" / "model" / "evaluation", last="index.html"):
            raise RuntimeError("the work failed")
    assert not any((tmp_path / "kept").iterdir())


def test_a_report_page_moves_in_last_so_it_never_links_missing_files(tmp_path, monkeypatch):
    """A move that fails half-way (a full disk) leaves the files before it, and no page linking the rest."""
    real_replace = os.replace

    def replace(source, destination):
        if Path(destination).name == "b.csv":
            raise OSError(28, "No space left on device")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "evaluation"
    with pytest.raises(OSError):
        with atomic_files(out, last="index.html") as staging:
            for name in ("index.html", "a.png", "b.csv", "c.png"):
                (staging / name).write_text(name)
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_an_overwrite_that_fails_between_its_two_renames_keeps_the_old_folder(tmp_path, monkeypatch):
    """The old folder was moved aside, then the new one's rename failed: the old one was lost from view."""
    import os

    target = tmp_path / "dataset"
    target.mkdir()
    (target / "clip.flac").write_text("old")
    real_replace, calls = os.replace, []

    def replace(source, destination):
        calls.append(source)
        if len(calls) == 2:  # the new folder onto the target
            raise OSError(5, "Input/output error")
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        with atomic_dir(target, overwrite=True) as tmp:
            (tmp / "clip.flac").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"] and (target / "clip.flac").read_text() == "old"


def test_a_folder_a_killed_swap_left_hidden_is_put_back(tmp_path):
    """SIGKILL between the two renames of an overwrite: the next run finds the old folder and restores it.

    The killed run had this process's PID (a container's processes often do, run after run): its
    folder is not this process's, so it is a dead run's; it was kept, and blocked every later overwrite.
    """
    import os

    from instrument_classifier.temporaries import host_tag

    prefix = f".dataset.{os.getpid()}-{host_tag()}-"
    hidden, half_deleted = tmp_path / f"{prefix}old0123abcd.tmp", tmp_path / f"{prefix}del0123abcd.tmp"
    for folder in (hidden, half_deleted):
        folder.mkdir()
        (folder / "clip.flac").write_text(folder.name)
    with atomic_dir(tmp_path / "models"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "models"]
    assert (tmp_path / "dataset" / "clip.flac").read_text() == hidden.name
    with atomic_dir(tmp_path / "dataset", overwrite=True) as tmp:  # and it can be overwritten again
        (tmp / "clip.flac").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "models"]


def test_atomic_writes_get_the_modes_open_and_mkdir_give(tmp_path):
    """Not tempfile's private 0600/0700: a dataset written by one user's workers is read by others."""
    with atomic_path(tmp_path / "file.txt") as tmp:
        tmp.write_text("x")
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "inside.txt").write_text("x")
    assert (tmp_path / "file.txt").stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~UMASK


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_kill_during_training_steps_waits_for_the_step_then_is_raised(signum, raised):
    """Native code is never unwound mid-step: the signal is noted, the loop stops, then it is raised."""
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal
    try:
        handlers = [signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)]
        steps, stopped_by_the_loop = 0, False
        with pytest.raises(raised):
            with signals_between_steps() as pending:
                while not pending() and steps < 100:
                    steps += 1
                    if steps == 3:
                        os.kill(os.getpid(), signum)
                        time.sleep(0.05)  # the handler runs here, and must not raise
                stopped_by_the_loop = True
        assert stopped_by_the_loop and steps == 3
        assert [signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)] == handlers  # restored
    finally:
        signal.signal(signal.SIGINT, previous_int)


def test_an_ignored_signal_stays_ignored_during_training_steps():
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job
    try:
        with signals_between_steps() as pending:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert not pending()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous_int)


def test_an_unwritable_output_is_named_as_given_not_by_its_temporary_name(tiny_model_dir, capfd):
    """/proc takes no new files, even from root: the errors named hidden files such as /proc/.r10.qw8rabkd.tmp.mid."""
    line = one_line_error(capfd, render_note.main(["-o", "/proc/r10.wav", "--instrument", "violin"]),
                          "cannot write /proc/r10.mid: No such file or directory")
    assert ".tmp" not in line
    line = one_line_error(capfd, prepare_training.main([str(tiny_model_dir.parent.parent), "-o", "/proc/p22"]),
                          "cannot write /proc/p22")
    assert ".tmp" not in line


def test_a_truncated_splits_file_is_one_short_line(tiny_model_dir, tmp_path, capsys):
    """It listed every missing row: a line as long as the dataset."""
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_model_dir.parent.parent, dataset, ignore=shutil.ignore_patterns("models"))
    splits = dataset / "training-data" / "splits.csv"
    splits.write_text("".join(splits.read_text().splitlines(keepends=True)[:11]))  # the header and 10 clips
    status, _, err = run_script(train, [dataset, "--epochs", "1", "-q", "--no-evaluate"], capsys)
    assert_one_line_error(status, err, "has no split for 46 of the dataset's 56 clips (sample_id 10, ...)",
                          "prepare_training.py")
    assert len(err) < 300 and not (dataset / "models").exists()
    # A split that is none of train, valid and test: it was an error about the network's width (units=0).
    original = (tiny_model_dir.parent.parent / "training-data" / "splits.csv").read_text()
    splits.write_text(original.replace(",train", ",bogus"))
    status, _, err = run_script(train, [dataset, "--epochs", "1", "-q", "--no-evaluate"], capsys)
    assert_one_line_error(status, err, "names a split 'bogus' (not train, valid or test)", "prepare_training.py")


def test_help_shows_real_defaults_only(capsys):
    """A setting that is off (nan) showed "(default: nan)"; a default of 0 was hidden, as if there were none."""
    texts = {}
    for script in (render_note, generate_audio_samples, generate_chords):
        with pytest.raises(SystemExit):
            script.main(["--help"])
        texts[script] = text = capsys.readouterr().out
        assert "default: nan" not in text and "default: []" not in text
    assert "--bank BANK" in texts[render_note] and "(0-16383) (default: 0)" in texts[render_note]


def test_the_leaderboard_of_one_model_folder_points_to_its_parent(tiny_model_dir, capsys):
    """It said "no finished models in MODEL_DIR; run train.py first" of a finished model's own folder."""
    one_line_error(capsys, leaderboard.main([str(tiny_model_dir)]), "is one model's folder",
                   f"({tiny_model_dir.parent})")


def test_features_of_other_parameters_name_what_differs(tiny_model_dir, tmp_path, capsys):
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_model_dir.parent.parent, dataset, ignore=shutil.ignore_patterns("models"))
    from instrument_classifier.feature_extraction import extract_dataset
    from instrument_classifier.features import ChromagramExtractor

    extract_dataset(dataset, overwrite=True, quiet=True, extractor=ChromagramExtractor(hop_size=1024))
    model = copy_model(tiny_model_dir, tmp_path / "model")
    one_line_error(capsys, evaluate.main([str(model), "--dataset", str(dataset), "-q"]),
                   "(hop_size 1024 there, 2048 the model's): the model cannot read them")
    assert not (model / "evaluation" / "dataset").exists()


def test_fractions_that_leave_no_training_clips_and_zero_epochs_are_refused(tiny_model_dir, tmp_path, capsys):
    """--valid-fraction 0.5 --test-fraction 0.5 left nothing to train on; --epochs 0 failed after training began."""
    dataset = Path(json.loads((tiny_model_dir / "config.json").read_text())["dataset"])
    out = tmp_path / "td"
    status, _, err = run_script(prepare_training, [dataset, "--valid-fraction", "0.5", "--test-fraction", "0.5",
                                                   "-o", out], capsys)
    assert_one_line_error(status, err, "sum to less than 1")
    assert not out.exists()
    for option in ("--epochs", "--batch-size"):
        status, _, err = run_script(train, [dataset, option, "0", "--models-dir", tmp_path / "models"], capsys)
        assert_one_line_error(status, err, f"{option[2:]} must be at least 1")
        assert not (tmp_path / "models").exists()


def test_file_names_that_are_not_utf8_are_read_and_written(tiny_model_dir, tmp_path, capsys):
    """Linux allows any bytes in a file name; soundfile took such a path for corrupt audio, or failed to write it
    with a traceback ("surrogates not allowed").  Text files name it with the bytes escaped, as ``ls -b`` does."""
    import soundfile as sf

    odd = os.fsdecode(b"take-\xff")
    clip = next((tiny_model_dir.parent.parent / "audio").glob("*.flac"))
    shutil.copy(clip, tmp_path / f"{odd}.flac")
    def run(*argv):  # a separate process: what it prints holds the name's bytes, which capsys cannot decode
        done = subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, capture_output=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # Said in messages with the bytes escaped, as ls -b shows them (stderr showed "\udcff").
    one_line_error(capsys, render_note.main(["--instrument", "violin", "-o", str(tmp_path / "n.flac"), "--midi",
                                             str(tmp_path / f"{odd}.wav")]), "(take-\\xff.wav): name it .mid")
    font = tmp_path / f"{odd}.sf2"  # FluidSynth's own loader takes only UTF-8 names
    font.symlink_to(resolve_soundfont("TimGM6mb").path)
    one_line_error(capsys, generate_audio_samples.main(["-c", "2", "-q", "-o", str(tmp_path / "d"), "--soundfont",
                                                        str(font)]), "take-\\xff.sf2: FluidSynth takes only UTF-8")
    answers = run("predict.py", "-m", tiny_model_dir, clip, tmp_path / f"{odd}.flac").splitlines()
    assert answers[1] == os.fsencode(tmp_path / f"{odd}.flac") + b"\t" + answers[0].split(b"\t")[-1]
    written = tmp_path / f"{odd}-violin.flac"
    run("render_note.py", "--instrument", "violin", "-o", written, "--midi", tmp_path / "n.mid")
    assert sf.info(os.fsencode(written)).frames == 88_200
    run("fluidsynth_wrapper.py", tmp_path / "n.mid", tmp_path / f"{odd}.wav")
    assert (tmp_path / f"{odd}.wav").is_file()

    (tmp_path / "recordings" / "piano").mkdir(parents=True)
    shutil.copy(clip, tmp_path / "recordings" / "piano" / f"{odd}.flac")
    (tmp_path / "recordings" / "piano" / f"{odd}.wav").write_text("not audio")
    model = copy_model(tiny_model_dir, tmp_path)
    assert evaluate.main([str(model), "--recordings", str(tmp_path / "recordings"), "-q"]) == 0
    report = model / "evaluation" / "recordings"
    assert list(pd.read_csv(report / "predictions.csv")["file"]) == ["piano/take-\\xff.flac"]
    assert list(pd.read_csv(report / "left_out.csv")["file"]) == ["piano/take-\\xff.wav"]
    capsys.readouterr()
    (tmp_path / odd / "piano").mkdir(parents=True)
    shutil.copy(clip, tmp_path / odd / "piano")
    one_line_error(capsys, evaluate.main([str(model), "--recordings", str(tmp_path / odd)]),
                   "a dataset named 'take-\\xff' is not UTF-8, as its pages are; rename it")

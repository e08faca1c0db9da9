"""The dataset stage: generate_audio_samples.py and the SingleToneDataset loader."""

import filecmp
import os
import shutil
from pathlib import Path

import mido
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import fluidsynth_wrapper
import generate_audio_samples
from conftest import TINY_COUNT, make_dataset
from instrument_classifier.cli import atomic_dir
from instrument_classifier.dataset import SingleToneDataset
from instrument_classifier.instruments import load_instruments
from instrument_classifier.model_files import MODEL_FOLDER_FILES
from instrument_classifier.synthesis import bundled_soundfont, default_soundfont

COLUMNS = ["sample_id", "instrument_id", "midi_program", "instrument_name", "family_name", "midi_number", "volume",
           "velocity", "duration", "soundfont", "peak_dbfs", "redraws", "audio_file", "midi_file"]


def test_parameters_follow_the_contract(tiny_dataset):
    parameters = pd.read_csv(tiny_dataset / "parameters.csv")
    assert set(COLUMNS) <= set(parameters.columns)
    assert list(parameters["sample_id"]) == list(range(TINY_COUNT))
    assert (parameters["instrument_id"] == parameters["midi_program"] + 1).all()
    assert parameters["volume"].between(0.5, 1.0).all()
    assert (parameters["velocity"] == (127 * parameters["volume"]).round()).all()
    assert (parameters["duration"] == 1.0).all()
    table = load_instruments().set_index("id")
    ranges = table.loc[parameters["instrument_id"], ["min_pitch", "max_pitch"]].to_numpy()
    assert ((parameters["midi_number"] >= ranges[:, 0]) & (parameters["midi_number"] <= ranges[:, 1])).all()
    assert set(parameters["family_name"]) == {"piano", "organ", "guitar", "strings", "brass", "reed", "pipe"}
    assert (parameters["instrument_name"] == table.loc[parameters["instrument_id"], "name"].to_numpy()).all()
    assert (parameters["redraws"] >= 0).all()
    # peak_dbfs is the clip's peak, as stored (16-bit FLAC), and no clip is near silence.
    peaks = 20 * np.log10(np.abs(SingleToneDataset(tiny_dataset).samples).max(axis=1))
    np.testing.assert_allclose(parameters["peak_dbfs"], peaks, atol=0.02)
    assert (parameters["peak_dbfs"] > -60).all()
    assert (tiny_dataset / "generation.json").is_file()


def test_midi_files_hold_the_recorded_note(tiny_dataset):
    parameters = pd.read_csv(tiny_dataset / "parameters.csv")
    for row in parameters.head(5).itertuples():
        messages = list(mido.MidiFile(tiny_dataset / row.midi_file))
        program = next(m for m in messages if m.type == "program_change").program
        note_on = next(m for m in messages if m.type == "note_on")
        assert (program, note_on.note, note_on.velocity) == (row.midi_program, row.midi_number, row.velocity)
        assert sum(m.time for m in messages) == pytest.approx(1.0)


def test_a_clips_midi_file_renders_its_audio(tiny_dataset, tmp_path):
    """A clean clip is its MIDI file rendered, though the generator rendered it after others on one synth."""
    parameters = pd.read_csv(tiny_dataset / "parameters.csv")
    for row in parameters.iloc[1:5].itertuples():
        again = tmp_path / f"{row.sample_id}.flac"
        assert fluidsynth_wrapper.main(["-s", row.soundfont, str(tiny_dataset / row.midi_file), str(again)]) == 0
        np.testing.assert_array_equal(sf.read(again, dtype="int16")[0],
                                      sf.read(tiny_dataset / row.audio_file, dtype="int16")[0])


def test_a_dataset_rendered_before_the_settled_synth_gets_a_warning(tiny_dataset, tmp_path, capsys):
    """Its clips hold the release of the note before them: extraction (and training) say so, and go on."""
    import json

    import extract_features

    assert json.loads((tiny_dataset / "generation.json").read_text())["renderer"] == 2
    old = Path(shutil.copytree(tiny_dataset, tmp_path / "old", ignore=shutil.ignore_patterns("features")))
    record = json.loads((old / "generation.json").read_text())
    del record["renderer"]
    (old / "generation.json").write_text(json.dumps(record))
    assert extract_features.main([str(old), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "was generated before each note was rendered from a settled synth" in err[0]
    assert (old / "features" / "features.json").is_file()
    (old / "generation.json").unlink()  # no record (a dataset made otherwise): nothing to say
    assert extract_features.main([str(old), "-q", "--overwrite"]) == 0
    assert capsys.readouterr().err == ""


def test_loader_gives_clips_with_early_onsets_and_no_silence(tiny_dataset):
    dataset = SingleToneDataset(tiny_dataset)
    samples = dataset.samples
    assert samples.shape == (TINY_COUNT, 88200) and samples.dtype == np.float32
    assert len(dataset.parameters) == TINY_COUNT
    peaks = np.abs(samples).max(axis=1)
    assert (peaks > 10 ** (-60 / 20)).all()  # no silent clip
    # Onset: the first sample above -40 dB of the clip's peak lies within 50 ms.
    onsets = np.argmax(np.abs(samples) >= 0.01 * peaks[:, None], axis=1)
    assert (onsets < 0.050 * 44100).all(), onsets.max() / 44100
    assert sf.info(dataset.audio_paths[0]).samplerate == 44100


def test_same_seed_same_bytes_for_any_jobs(tmp_path):
    one = make_dataset(tmp_path / "j1", count=24, seed=3, jobs=1)
    two = make_dataset(tmp_path / "j2", count=24, seed=3, jobs=2)
    assert filecmp.cmp(one / "parameters.csv", two / "parameters.csv", shallow=False)
    comparison = filecmp.dircmp(one / "audio", two / "audio")
    assert len(comparison.common_files) == 24 and not comparison.diff_files
    _, mismatch, errors = filecmp.cmpfiles(one / "audio", two / "audio", comparison.common_files, shallow=False)
    assert not mismatch and not errors
    other = make_dataset(tmp_path / "other", count=24, seed=4, jobs=1)
    assert not filecmp.cmp(one / "parameters.csv", other / "parameters.csv", shallow=False)


def test_clips_are_spread_over_several_soundfonts(tmp_path):
    fonts = [str(default_soundfont()), str(bundled_soundfont())]
    path = make_dataset(tmp_path / "fonts", count=6, soundfonts=fonts, audio_format="wav")
    parameters = pd.read_csv(path / "parameters.csv")
    # The catalogue's font by its name, a font outside the catalogue by its file name.
    assert list(parameters["soundfont"]) == ["FluidR3_GM", os.path.basename(fonts[1])] * 3
    assert list(parameters["lineage"]) == ["fluid", "other"] * 3
    assert sf.info(path / parameters.loc[0, "audio_file"]).format == "WAV"


def test_cli_writes_a_dataset_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["-c", "3", "-s", "1", "-o", str(out), "-f", "wav", "-j", "1", "-q", "--families", "brass"]
    assert generate_audio_samples.main(args) == 0
    assert set(pd.read_csv(out / "parameters.csv")["family_name"]) == {"brass"}
    assert generate_audio_samples.main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert generate_audio_samples.main([*args, "--overwrite", "-c", "2"]) == 0
    assert len(pd.read_csv(out / "parameters.csv")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]  # no temporary folder left behind


def test_only_the_seeds_and_the_default_recipe_have_a_default_folder(tmp_path, monkeypatch, capsys):
    """A bare run once wrote 2000 clean clips of one font into multi-font-10000, the default dataset's folder."""
    monkeypatch.setattr(generate_audio_samples, "WORKING_DIR", tmp_path)
    args = ["-c", "2", "-j", "1", "-q"]
    assert generate_audio_samples.main(args) == 0
    assert generate_audio_samples.main([*args, "--soundfont", "all", "--variation", "realistic"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi-font-2", "single-notes-2"]
    for other in (["--variation", "realistic"], ["--soundfont", "all"], ["-s", "7"], ["--families", "brass"],
                  ["--soundfont", "FluidR3_GM", "TimGM6mb", "--variation", "realistic"], ["-f", "wav"],
                  ["--instruments", "violin"]):
        assert generate_audio_samples.main([*args, *other]) == 2
        assert "give the output folder with -o" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi-font-2", "single-notes-2"]


def test_overwrite_replaces_only_an_earlier_dataset_never_other_files_or_models(tmp_path, capsys, monkeypatch):
    args = ["-c", "1", "-s", "1", "-f", "wav", "-j", "1", "-q", "--families", "brass", "--overwrite"]
    papers = tmp_path / "papers"
    (papers / "docs").mkdir(parents=True)
    (papers / "docs" / "thesis.txt").write_text("years of work")
    assert generate_audio_samples.main([*args, "-o", str(papers)]) == 2
    assert "holds files this stage did not write" in capsys.readouterr().err
    assert (papers / "docs" / "thesis.txt").read_text() == "years of work"

    dataset = tmp_path / "dataset"
    assert generate_audio_samples.main([*args, "-o", str(dataset)]) == 0
    for models in ("models", "models-without-gs"):  # the default models folder, or another --models-dir in it
        model = dataset / models / "20260101-000000-harmonic-s42"
        model.mkdir(parents=True)
        for name in MODEL_FOLDER_FILES:
            (model / name).write_text("x")
        assert generate_audio_samples.main([*args, "-o", str(dataset)]) == 2
        assert f"holds the trained model {models}/20260101-000000-harmonic-s42/ that --overwrite would delete" \
            in capsys.readouterr().err
        assert (model / "model.keras").is_file()
        shutil.rmtree(dataset / models)
    # A user's file in the dataset, a folder put in its audio/: not the pipeline's, so never deleted (they were).
    for stray, shown in (("my_notes.txt", "my_notes.txt"), ("audio/nested/parameters.csv", "audio/nested/"),
                         ("features/notes.txt", "features/notes.txt"), (".git/HEAD", ".git/"),
                         ("features/chromagrams/notes.txt", "features/chromagrams/notes.txt"),
                         ("audio/sample_000009.flac/x", "audio/sample_000009.flac/")):
        (dataset / stray).parent.mkdir(parents=True, exist_ok=True)
        (dataset / stray).write_text("mine")
        assert generate_audio_samples.main([*args, "-o", str(dataset)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"holds {shown} (not one of the pipeline's files)" in err, err
        assert (dataset / stray).read_text() == "mine"
        shutil.rmtree(dataset / Path(shown)) if shown.endswith("/") else (dataset / stray).unlink()
    # What the later stages wrote goes with the clips it was made from: features, training data under any name.
    for name in ("features/features.json", "features/chromagrams.npz", "features/chromagrams/00000.npy",
                 "features/chromagrams/index.json", "training-data/splits.csv", "training-data/preprocessing.json",
                 "td-without-gs/splits.csv", "models/.20260101-000000-harmonic-s42.123-abcdef-x1.tmp/model.keras",
                 ".parameters.csv.99-abcdef-x2.tmp.csv"):  # and temporaries that killed runs left
        (dataset / name).parent.mkdir(parents=True, exist_ok=True)
        (dataset / name).write_text("x")
    assert generate_audio_samples.main([*args, "-o", str(dataset)]) == 0  # its own earlier dataset: replaced
    assert sorted(p.name for p in dataset.iterdir()) == ["audio", "generation.json", "midi", "parameters.csv"]

    here = tmp_path / "here"  # a dataset without models: only the rule for the current folder protects it
    assert generate_audio_samples.main([*args, "-o", str(here)]) == 0
    monkeypatch.chdir(here)
    for output, message in (("", "the output folder is an empty path"), (".", "is the current folder"),
                            ("..", "the output folder .. holds the current folder; name a folder of its own")):
        assert generate_audio_samples.main([*args, "-o", output]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert (here / "parameters.csv").is_file() and (papers / "docs" / "thesis.txt").is_file()


@pytest.mark.parametrize("extra, message", [
    (["-c", "0"], "--count must be at least 1"),
    (["-c", "-5"], "--count must be at least 1"),
    (["-f", "mp3"], "unknown audio format 'mp3'"),
    (["--soundfont", "/nonexistent/font.sf2"], "SoundFont not found"),
    (["--soundfont", "instruments.csv"], "not a SoundFont"),
    (["--families", "kazoo"], "unknown family 'kazoo'"),
    (["--instruments", "theremin"], "unknown instrument 'theremin'"),
    # Given twice: the last won, or the font was kept once, in silence.
    (["--vary", "room_probability=0", "--vary", "room_probability=1"], "--vary room_probability is given twice"),
    (["--soundfont", "all", "FluidR3_GM"], "SoundFont FluidR3_GM is named twice ('all' names every font"),
    (["--soundfont", "TimGM6mb", "timgm6mb"], "SoundFont TimGM6mb is named twice: name each font once"),
    (["--instruments", "violin", "--families", "piano"], "give one of them"),  # --families was dropped, unsaid
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    status = generate_audio_samples.main(["-c", "2", "-o", str(out), "-q", *extra])
    err = capsys.readouterr().err
    assert status == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unwritable_output_directory_is_one_line(capsys):
    status = generate_audio_samples.main(["-c", "2", "-o", "/proc/no-such-dataset", "-q"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "cannot write /proc/no-such-dataset: No such file or directory" in err


@pytest.mark.parametrize("signal_name, status, message", [("SIGTERM", 143, "terminated"),
                                                           ("SIGINT", 130, "interrupted")])
def test_killed_generation_is_one_line_and_leaves_nothing(tmp_path, signal_name, status, message):
    """kill or Ctrl-C while two worker processes render: no worker tracebacks, no dataset folder."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "dataset"
    process = subprocess.Popen([sys.executable, "generate_audio_samples.py", "-c", "2000", "-j", "2", "-q",
                                "-o", str(out)], cwd=Path(generate_audio_samples.__file__).parent,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # Ctrl-C as in a terminal: a background job (as CI may run us) ignores SIGINT.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(tmp_path.glob(".dataset.*/audio/*.flac")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the workers have written clips
    process.send_signal(getattr(signal, signal_name))
    _, err = process.communicate(timeout=60)
    assert process.returncode == status and err.strip().splitlines() == [f"generate_audio_samples.py: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_loader_rejects_a_folder_that_is_not_a_dataset(tmp_path):
    from instrument_classifier.cli import UserError

    with pytest.raises(UserError, match="is not a dataset"):
        SingleToneDataset(tmp_path)


def test_interrupted_write_leaves_nothing_that_looks_finished(tmp_path):
    target = tmp_path / "dataset"
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "parameters.csv").write_text("sample_id\n")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_larger_than_the_disk_is_refused_at_once(tmp_path, capsys):
    """-c 10^12 once built its job list in memory (4 GB in 10 s): now the disk-space estimate stops it first."""
    import time

    started = time.monotonic()
    status = generate_audio_samples.main(["-c", "1000000000000", "-o", str(tmp_path / "huge"), "-q"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "1,000,000,000,000 clips need about" in err and "GB free" in err
    assert time.monotonic() - started < 5 and list(tmp_path.iterdir()) == []


def test_the_temporary_folder_of_a_killed_run_is_cleaned_up(tmp_path):
    """A SIGKILLed run cannot clean up; the next run removes what a dead process left, and nothing else."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "dataset"
    process = subprocess.Popen([sys.executable, "generate_audio_samples.py", "-c", "2000", "-j", "1", "-q",
                                "-o", str(out)], cwd=Path(generate_audio_samples.__file__).parent)
    deadline = time.monotonic() + 60
    while not any(tmp_path.glob(".dataset.*/audio/*.flac")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    left = list(tmp_path.glob(".dataset.*.tmp"))
    assert len(left) == 1  # what SIGKILL leaves
    from instrument_classifier.temporaries import host_tag

    dead = process.pid
    running = subprocess.Popen(["sleep", "60"])  # a live run's folder: another process's, still running
    alive = tmp_path / f".dataset.{running.pid}-{host_tag()}-keep.tmp"
    other_machine = tmp_path / f".dataset.{dead}-{'0' * 6 if host_tag() != '0' * 6 else '1' * 6}-abcd.tmp"
    killed_file = tmp_path / f".parameters.{dead}-{host_tag()}-abcd.tmp.csv"  # any name, a file too
    for folder in (alive, other_machine):
        folder.mkdir()
    killed_file.write_text("half")
    try:
        make_dataset(out, count=3)
    finally:
        running.kill()
        running.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dataset", alive.name, other_machine.name])


def test_the_temporaries_of_live_runs_are_kept(tmp_path, monkeypatch):
    """What this process is writing, and what another user's live process is (it cannot be signalled), stay."""
    from instrument_classifier import temporaries

    own = temporaries.new_temporary_name(tmp_path / "dataset", "")
    own.mkdir()
    another_users = tmp_path / f".features.{os.getpid() + 1}-{temporaries.host_tag()}-abcd.tmp"
    another_users.mkdir()

    def not_permitted(pid, signal):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(temporaries.os, "kill", not_permitted)
    assert temporaries.remove_stale_temporaries(tmp_path) == []
    assert own.is_dir() and another_users.is_dir()


def test_every_note_of_an_instrument_s_range_is_drawn_its_top_too():
    from instrument_classifier.generation import draw_note
    from instrument_classifier.instruments import select_instruments

    violin = select_instruments(load_instruments(), instruments=["violin"]).assign(min_pitch=60, max_pitch=62)
    rng = np.random.default_rng(0)
    assert {draw_note(rng, violin, (0.5, 1.0))["midi_number"] for _ in range(100)} == {60, 61, 62}


def test_redraws_count_the_silent_notes_before_the_kept_one_and_the_recording_chain_does_not_change_them(tmp_path):
    """A note a font leaves silent is drawn again (redraws counts the notes thrown away), judged on the dry note:
    a level or noise added by the recording chain afterwards must not keep a silent note."""
    clean = pd.read_csv(make_dataset(tmp_path / "a", count=56, seed=7) / "parameters.csv")
    loud = pd.read_csv(make_dataset(tmp_path / "b", count=56, seed=7, vary=["level_probability=1",
                                                                            "noise_probability=1"]) / "parameters.csv")
    assert clean["redraws"].min() == 0 and clean["redraws"].max() >= 1
    columns = ["instrument_id", "midi_number", "velocity", "redraws"]
    pd.testing.assert_frame_equal(clean[columns], loud[columns])


def test_our_synthesiser_s_bank_is_recorded_as_played(tmp_path):
    """parameters.csv's bank is the random instrument of our synthesiser that rendered the clip (up to 16383)."""
    from instrument_classifier.additive import BANKS

    table = pd.read_csv(make_dataset(tmp_path / "a", count=4, seed=3, soundfonts=["additive"]) / "parameters.csv")
    assert table["bank"].tolist() == [int(np.random.default_rng([3, i, 3]).integers(1, BANKS)) for i in range(4)]

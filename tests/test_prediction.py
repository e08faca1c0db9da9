"""Prediction: reading any audio, the onset window, the Predictor, and predict.py.

Unit tests use synthetic tones with known onsets; the rest use a tiny model
trained for a few epochs on the session's tiny dataset.  Such a model is poor,
so "the same label" tests pick the clip it is most sure of and also check that
the features themselves barely move.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

import predict
from instrument_classifier.audio import (AudioError, clip_window, find_onset, read_audio, read_mono, resample,
                                         to_full_scale, to_mono)

RATE = 44_100
CLIP = 88_200
REPO = Path(__file__).resolve().parent.parent


def tone(seconds=1.5, *, rate=RATE, pitch=440.0, level=0.3, attack=0.01):
    """A decaying harmonic tone with a linear attack [shape=(n,)], float32."""
    t = np.arange(round(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * pitch * k * t + 1.0) / k for k in range(1, 6))
    envelope = np.minimum(1.0, (t + 1 / rate) / attack) * np.exp(-2 * t)  # non-zero from the first sample
    return (level * wave * envelope / np.abs(wave).max()).astype(np.float32)


# ---------------------------------------------------------------------------
# The session's tiny model (conftest.py: tiny_model_dir, predictor)


@pytest.fixture(scope="module")
def confident_clip(predictor, tiny_model_dir):
    """(path, samples) of the dataset clip the model is most sure of (largest top-1 - top-2 margin).

    Among notes up to C5, so that the note's cells below 1.3 kHz survive a 22.05 kHz file.
    """
    dataset = tiny_model_dir.parent.parent
    parameters = pd.read_csv(dataset / "parameters.csv")
    paths = [dataset / name for name in parameters.loc[parameters["midi_number"] <= 72, "audio_file"]]
    best, best_margin = None, -1.0
    for path in paths:
        samples, rate = read_audio(path)
        p = np.sort(list(predictor.predict(samples, rate).probabilities.values()))
        if p[-1] - p[-2] > best_margin:
            best, best_margin = (path, samples[:, 0]), p[-1] - p[-2]
    return best


# ---------------------------------------------------------------------------
# Reading and shaping audio


def test_find_onset_after_digital_silence_is_the_first_sample():
    note = tone()
    for offset in (0, 1234, 3 * RATE + 17):
        padded = np.concatenate([np.zeros(offset, np.float32), note])
        assert find_onset(padded, RATE) == offset


def test_find_onset_keeps_a_clip_that_starts_with_its_note():
    note = tone(attack=0.003)
    note[:100] = 0  # FluidSynth clips can start with a few silent samples
    assert find_onset(note, RATE) == 0


def test_find_onset_in_a_noisy_recording_lands_just_before_the_note():
    rng = np.random.default_rng(0)
    start = int(1.234 * RATE)
    for noise in (1e-4, 1e-3, 1e-2):
        audio = rng.normal(0, noise, 4 * RATE).astype(np.float32)
        audio[start:start + RATE] += tone(1.0)
        onset = find_onset(audio, RATE)
        assert start - 0.015 * RATE <= onset <= start + 0.002 * RATE, (noise, onset - start)


def test_find_onset_of_silence_and_of_a_slow_attack():
    assert find_onset(np.zeros(1000, np.float32), RATE) == 0
    slow = np.concatenate([np.zeros(RATE, np.float32), tone(attack=0.2)])
    assert RATE <= find_onset(slow, RATE) <= RATE + 0.01 * RATE


def test_clip_window_pads_and_cuts():
    audio = np.arange(1, 11, dtype=np.float32)
    assert clip_window(audio, 8, 5).tolist() == [9, 10, 0, 0, 0]
    assert clip_window(audio, 2, 3).tolist() == [3, 4, 5]


def test_to_mono_and_resample():
    left, right = tone(0.5), tone(0.5, pitch=220)
    assert np.allclose(to_mono(np.stack([left, right], axis=1)), (left + right) / 2, atol=1e-7)
    assert to_mono(left[:, None]).shape == left.shape
    resampled = resample(tone(1.0, rate=48_000), 48_000, RATE)
    assert resampled.dtype == np.float32 and len(resampled) == RATE


@pytest.mark.parametrize("suffix, subtype", [
    (".flac", "PCM_16"), (".wav", "FLOAT"), (".ogg", "VORBIS"), (".aiff", "PCM_24"),
    pytest.param(".mp3", "MPEG_LAYER_III", marks=pytest.mark.skipif(
        "MP3" not in sf.available_formats(), reason="this libsndfile has no MP3"))])
def test_read_audio_formats(tmp_path, suffix, subtype):
    stereo = np.stack([tone(0.5, rate=22_050), tone(0.5, rate=22_050)], axis=1)
    sf.write(tmp_path / f"clip{suffix}", stereo, 22_050, subtype=subtype)
    for source in (tmp_path / f"clip{suffix}", (tmp_path / f"clip{suffix}").read_bytes()):
        samples, rate = read_audio(source, name=f"clip{suffix}")
        assert rate == 22_050 and samples.shape[1] == 2 and samples.dtype == np.float32
        assert abs(len(samples) - len(stereo)) <= (2000 if suffix == ".mp3" else 1)  # MP3 pads its frames


def test_read_audio_bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "fake.wav").write_text("not audio either")
    sf.write(tmp_path / "good.flac", tone(0.5), RATE)
    (tmp_path / "cut.flac").write_bytes((tmp_path / "good.flac").read_bytes()[:200])
    sf.write(tmp_path / "noframes.wav", np.zeros((0, 1), np.float32), RATE)
    cases = {"missing.wav": "missing", "empty.wav": "empty", "notes.txt": "unsupported", "fake.wav": "unreadable",
             "cut.flac": "unreadable", "noframes.wav": "empty", ".": "missing"}
    for name, kind in cases.items():
        with pytest.raises(AudioError) as error:
            read_audio(tmp_path / name)
        assert error.value.kind == kind, name
        assert "\n" not in str(error.value)


def test_read_mono_downmixes_block_by_block_within_the_budget(tmp_path):
    rng = np.random.default_rng(3)
    audio = rng.uniform(-1, 1, (100_000, 3)).astype(np.float32)
    sf.write(tmp_path / "three.wav", audio, 48_000, subtype="FLOAT")
    whole = read_mono(tmp_path / "three.wav")
    assert whole.channels == 3 and not whole.truncated and whole.file_seconds == pytest.approx(100_000 / 48_000)
    assert np.allclose(whole.samples, audio.mean(axis=1), atol=1e-7)
    # Samples x channels, not seconds, bound the work: 3 channels of 30,000 samples, then it stops.
    part = read_mono(tmp_path / "three.wav", max_samples=90_000)
    assert len(part.samples) == 30_000 and part.truncated and part.file_seconds == whole.file_seconds
    assert np.array_equal(part.samples, whole.samples[:30_000])
    assert len(read_mono(tmp_path / "three.wav", max_seconds=0.5).samples) == 24_000


def test_finite_samples_never_overflow():
    """Float files may hold any finite value: the mean of two 3e38 channels is 3e38, not inf."""
    loud = np.full((10, 2), 3e38, np.float32)
    assert np.isfinite(to_mono(loud)).all() and to_mono(loud)[0] == np.float32(3e38)
    scaled, gain_db = to_full_scale(np.array([1e300, -5e299]))
    assert scaled.dtype == np.float32 and scaled.tolist() == [1.0, -0.5] and gain_db == pytest.approx(6000)
    quiet = np.array([0.5, -0.25], np.float32)
    assert to_full_scale(quiet)[0] is quiet and to_full_scale(quiet)[1] == 0.0


# ---------------------------------------------------------------------------
# The Predictor


def test_predictor_matches_the_training_run(predictor, tiny_model_dir):
    """A dataset clip through the predictor gets the probabilities train.py recorded."""
    table = pd.read_csv(tiny_model_dir / "predictions.csv").head(5)
    for row in table.itertuples():
        samples, rate = read_audio(tiny_model_dir.parent.parent / row.audio_file)
        result = predictor.predict(samples, rate)
        expected = [getattr(row, f"p_{name}") for name in predictor.class_names]
        assert np.allclose(list(result.probabilities.values()), expected, atol=1e-4)
        assert result.label == row.predicted and result.warnings == []
        assert result.onset_seconds == 0.0


def test_predict_result(predictor):
    result = predictor.predict(tone(2.0), RATE)
    assert list(result.probabilities) == predictor.class_names
    assert result.label == max(result.probabilities, key=result.probabilities.get)  # the most probable class
    assert abs(sum(result.probabilities.values()) - 1) < 1e-4
    # The chromagram shown to the user is the clip's: A4 (MIDI 69, bin 48) is its loudest bin while it sounds.
    assert result.chromagram.shape == (44, 115)
    assert (np.argmax(result.chromagram[:20], axis=1) == 69 - 21).all()
    record = json.loads(json.dumps(result.to_json()))  # plain JSON values
    assert record["label"] == result.label and record["warnings"] == list(result.warnings)
    assert record["probabilities"] == pytest.approx(result.probabilities, abs=1e-6)
    assert record["sample_rate"] == RATE and record["duration_seconds"] == pytest.approx(2.0)


def test_same_clip_in_other_formats_gets_the_same_label(predictor, confident_clip, tmp_path):
    path, clip = confident_clip
    base = predictor.predict_file(path)
    variants = {
        "stereo-louder.wav": (np.stack([clip, clip], axis=1) * 2.0, RATE, "PCM_16"),
        "resampled-48k.wav": (soxr.resample(clip, RATE, 48_000), 48_000, "PCM_24"),
        "resampled-22k.ogg": (soxr.resample(clip, RATE, 22_050), 22_050, "VORBIS"),
        "padded-3s.flac": (np.concatenate([np.zeros(3 * RATE, np.float32), clip]), RATE, "PCM_16"),
    }
    # Cells of the note below 1.3 kHz (bin 60): in band for the 22.05 kHz file, and
    # loud enough (> -60 dB) that the Vorbis noise floor does not matter.
    note_cells = np.zeros_like(base.chromagram, dtype=bool)
    note_cells[:, :60] = base.chromagram[:, :60] > 0.5
    assert note_cells.sum() > 20
    for name, (audio, rate, subtype) in variants.items():
        sf.write(tmp_path / name, audio, rate, subtype=subtype)
        result = predictor.predict_file(tmp_path / name)
        assert result.label == base.label, name
        shift = (result.chromagram - base.chromagram)[note_cells]
        if name == "padded-3s.flac":
            # The window starts at the clip's first sound (the unpadded clip keeps
            # its few leading zeros: it starts with its note, as training clips do).
            assert round(result.onset_seconds * RATE) == 3 * RATE + np.flatnonzero(clip)[0]
            assert np.median(np.abs(shift)) < 0.03
        elif name == "stereo-louder.wav":
            # The features are absolute dB: +6 dB moves the note's cells up by 6/120.
            assert abs(np.median(shift) - 6.02 / 120) < 0.005
        elif name == "resampled-48k.wav":
            assert np.abs(shift).max() < 0.01
        else:
            assert np.median(np.abs(shift)) < 0.03, np.median(np.abs(shift))


def test_clip_far_outside_the_training_levels_is_scaled_into_them(predictor, confident_clip):
    """A file normalised to -1 dBFS (the clips peak near -19 dBFS) is brought to the loudest training level,
    one 30 dB under the quietest to the quietest."""
    path, clip = confident_clip
    low, high = predictor.level_range_dbfs
    base = predictor.predict_file(path)
    normalised = clip * np.float32(10 ** (-1 / 20) / np.abs(clip).max())
    result = predictor.predict(normalised, RATE)
    assert result.label == base.label
    assert any(f"scaled to {high:.0f} dBFS" in w for w in result.warnings), result.warnings
    prepared = predictor.prepare(normalised, RATE)
    assert abs(20 * np.log10(np.abs(prepared.window).max()) - high) < 0.01
    assert not any("scaled" in w for w in predictor.predict(clip * np.float32(10 ** (3 / 20)), RATE).warnings)
    # and a recording far quieter than any training clip is brought up to the quietest level, not the loudest
    quiet = clip * np.float32(10 ** ((low - 30) / 20) / np.abs(clip).max())
    result = predictor.predict(quiet, RATE)
    assert result.label == base.label
    assert any(f"scaled to {low:.0f} dBFS" in w for w in result.warnings), result.warnings
    assert abs(20 * np.log10(np.abs(predictor.prepare(quiet, RATE).window).max()) - low) < 0.01


def test_silent_and_short_clips_get_warnings(predictor):
    silent = predictor.predict(np.zeros(RATE, np.float32), RATE)
    assert len(silent.warnings) == 1 and "silent" in silent.warnings[0]
    short = predictor.predict(tone(0.3), RATE)
    assert any("short clip" in w for w in short.warnings)
    assert any("sample rate" in w for w in predictor.predict(tone(1.0, rate=8000), 8000).warnings)


def test_noise_is_no_note(predictor, confident_clip):
    """Hiss, hum-free room noise or clicks get a label but a warning; a note, even in as much noise, none."""
    rng = np.random.default_rng(0)
    white = rng.standard_normal(2 * RATE).astype(np.float32) * 0.1
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.arange(1, RATE + 2)), 2 * RATE).astype(np.float32)
    clicks = (rng.random(2 * RATE) < 0.001).astype(np.float32) * 0.5
    for noise in (white, pink, clicks):
        warnings = predictor.predict(noise, RATE).warnings
        assert any(w.startswith("no clear note: the clip sounds like noise") for w in warnings), warnings
    note = tone(2.0)
    noisy = note + white * np.float32(np.std(note) / np.std(white))  # equal power
    for clip in (confident_clip[1], note, noisy):
        assert not any("no clear note" in w for w in predictor.predict(clip, RATE).warnings)


@pytest.mark.parametrize("peak", [1e37, 3e38, 1e300])
def test_huge_finite_samples_are_scaled_into_the_training_levels(predictor, confident_clip, peak):
    path, clip = confident_clip
    dtype = np.float64 if peak > float(np.finfo(np.float32).max) else np.float32
    huge = (clip.astype(np.float64) * (peak / float(np.abs(clip).max()))).astype(dtype)
    assert np.isfinite(huge).all()
    result = predictor.predict(huge, RATE)
    assert result.label == predictor.predict_file(path).label
    assert result.peak_dbfs == pytest.approx(20 * np.log10(peak), abs=0.01)
    assert any(f"scaled to {predictor.level_range_dbfs[1]:.0f} dBFS" in w for w in result.warnings)


def test_a_note_after_the_read_limit_is_silence_with_the_reason(predictor, tmp_path):
    late = np.concatenate([np.zeros(3 * RATE, np.float32), tone(1.5)])
    sf.write(tmp_path / "late.flac", late, RATE)
    result = predictor.predict_file(tmp_path / "late.flac", max_seconds=2.0)
    assert result.warnings == ["silent clip: no note in the first 2.0 s of 4.5 s (a file is read only that far), "
                               "the label means nothing"]
    assert result.duration_seconds == pytest.approx(4.5)
    assert predictor.predict_file(tmp_path / "late.flac").warnings == []


def test_predict_rejects_bad_arrays(predictor):
    with pytest.raises(AudioError):
        predictor.predict(np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioError):
        predictor.predict(np.full(100, np.nan, np.float32), RATE)
    with pytest.raises(AudioError):
        predictor.predict(tone(0.5), 1)


def test_predict_files_keeps_order_and_goes_on_after_errors(predictor, tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), RATE)
    sf.write(tmp_path / "b.flac", tone(1.0, pitch=220), RATE)
    (tmp_path / "bad.wav").write_text("nope")
    paths = [tmp_path / "a.wav", tmp_path / "bad.wav", tmp_path / "missing.ogg", tmp_path / "b.flac"]
    results = list(predictor.predict_files(paths, batch_size=2, jobs=1))
    assert [path for path, _ in results] == [str(p) for p in paths]
    kinds = [getattr(result, "kind", None) for _, result in results]
    assert kinds == [None, "unreadable", "missing", None]
    single = predictor.predict_file(tmp_path / "b.flac")
    assert np.allclose(list(results[3][1].probabilities.values()), list(single.probabilities.values()),
                       atol=1e-5)


# ---------------------------------------------------------------------------
# predict.py


@pytest.fixture
def clip_files(tmp_path):
    sf.write(tmp_path / "one.wav", tone(1.0), RATE)
    sf.write(tmp_path / "two.flac", tone(1.0, pitch=330), RATE)
    sf.write(tmp_path / "silent.wav", np.zeros(RATE, np.float32), RATE)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.txt").write_text("hello")
    return tmp_path


def test_cli_prints_one_label_per_file(tiny_model_dir, predictor, clip_files, tmp_path, capsys):
    files = [str(clip_files / "one.wav"), str(clip_files / "two.flac")]
    assert predict.main(["-m", str(tiny_model_dir), *files]) == 0
    out, err = capsys.readouterr()
    expected = [predictor.predict_file(path) for path in files]
    assert out.splitlines() == [f"{path}\t{result.label}" for path, result in zip(files, expected)]
    assert err == ""

    assert predict.main(["-m", str(tiny_model_dir), "--proba", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, result in zip(lines, expected):
        path, label, probabilities = line.split("\t")
        assert label == result.label
        pairs = [pair.split("=") for pair in probabilities.split()]
        assert [name for name, _ in pairs] == predictor.class_names
        assert [float(p) for _, p in pairs] == pytest.approx(list(result.probabilities.values()), abs=1e-4)
    # A tab or newline in a file's name split its line into more fields and lines; a backslash is doubled,
    # so that a name holding "\t" itself is not read back as a tab.
    odd = tmp_path / "a\tb\nc\\t.wav"
    shutil.copy(files[0], odd)
    assert predict.main(["-m", str(tiny_model_dir), str(odd)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{tmp_path}/a\\tb\\nc\\\\t.wav\t{expected[0].label}"]


def test_cli_json(tiny_model_dir, predictor, clip_files, capsys):
    assert predict.main(["-m", str(tiny_model_dir), "--json", str(clip_files / "one.wav")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"file", "label", "probabilities", "model_id", "warnings"} <= set(record)
    expected = predictor.predict_file(clip_files / "one.wav")
    assert record["model_id"] == predictor.model_id and record["label"] == expected.label
    assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)


def test_cli_csv_is_a_table_a_spreadsheet_reads(tiny_model_dir, predictor, clip_files, capsys):
    """One row per file in order, a failed one with its error; a comma or newline in a name stays in its cell."""
    odd = clip_files / "a, \"b\"\nc.wav"
    shutil.copy(clip_files / "one.wav", odd)
    files = [str(odd), str(clip_files / "text.txt"), str(clip_files / "silent.wav")]
    assert predict.main(["-m", str(tiny_model_dir), "--csv", *files]) == 1
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert list(table.columns) == ["file", "label", *(f"p_{name}" for name in predictor.class_names),
                                   "onset_seconds", "duration_seconds", "sample_rate", "peak_dbfs",
                                   "warnings", "error", "model_id"]
    assert table["file"].tolist() == files and set(table["model_id"]) == {predictor.model_id}
    expected = predictor.predict_file(odd)
    assert table["label"][0] == expected.label and table["error"][0] == ""
    assert table.loc[0, [f"p_{name}" for name in predictor.class_names]].astype(float).tolist() == \
        pytest.approx(list(expected.probabilities.values()), abs=1e-5)
    measured = expected.to_json()  # each measurement in its own column
    for column in ("onset_seconds", "duration_seconds", "sample_rate", "peak_dbfs"):
        assert float(table[column][0]) == pytest.approx(measured[column], abs=1e-4), column
    assert table["label"][1] == "" and "unsupported" in table["error"][1]
    assert "silent" in table["warnings"][2]
    with pytest.raises(SystemExit):  # one output format at a time
        predict.main(["-m", str(tiny_model_dir), "--csv", "--json", files[0]])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_bad_files_one_line_each_and_the_rest_classified(tiny_model_dir, clip_files, capsys):
    names = ["one.wav", "missing.wav", "empty.wav", "text.txt", "silent.wav", "two.flac"]
    status = predict.main(["-m", str(tiny_model_dir), *[str(clip_files / n) for n in names]])
    out, err = capsys.readouterr()
    assert status == 1
    assert [Path(line.split("\t")[0]).name for line in out.splitlines()] == ["one.wav", "silent.wav", "two.flac"]
    errors = [line for line in err.splitlines() if ": error: " in line]
    warnings = [line for line in err.splitlines() if ": warning: " in line]
    assert len(errors) == 3 and len(warnings) == 1 and "silent" in warnings[0]
    assert "Traceback" not in err
    # An empty path was taken for the current folder (".: not a file").
    assert predict.main(["-m", str(tiny_model_dir), ""]) == 1
    assert "error: an empty path: give an audio file" in capsys.readouterr().err


def test_cli_classifies_huge_samples_beside_a_good_file(tiny_model_dir, clip_files, capsys):
    """A float WAV peaking at 1e37 once stopped the whole batch with a traceback."""
    huge = (tone(1.0, rate=48_000).astype(np.float64) * (1e37 / 0.3)).astype(np.float32)
    sf.write(clip_files / "huge.wav", huge, 48_000, subtype="FLOAT")
    files = [str(clip_files / "one.wav"), str(clip_files / "huge.wav")]
    assert predict.main(["-m", str(tiny_model_dir), *files]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == files
    assert err.count("\n") == 1 and re.search(r"huge\.wav: peak level 7[34]\d\.\d dBFS is outside", err), err


def test_cli_bad_model_dir(tiny_model_dir, tmp_path, clip_files, capsys):
    assert predict.main(["-m", str(tmp_path / "nope"), str(clip_files / "one.wav")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "model directory not found" in err
    # The model's file for its folder: it said "not found" of a file that is there.
    assert predict.main(["-m", str(tiny_model_dir / "model.keras"), str(clip_files / "one.wav")]) == 2
    assert f"is a file: give the model's folder (the one holding model.keras), here {tiny_model_dir}" in \
        capsys.readouterr().err
    assert predict.main(["-m", str(clip_files / "one.wav"), str(clip_files / "one.wav")]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file: give the model's folder (the one holding model.keras)")


@pytest.mark.parametrize("size", ["0", "-3"])
def test_cli_batch_size_below_one_is_one_line(tiny_model_dir, clip_files, capsys, size):
    assert predict.main(["-m", str(tiny_model_dir), "-b", size, str(clip_files / "one.wav")]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].endswith(": error: --batch-size must be at least 1")


def test_a_model_or_features_of_another_chromagram_algorithm_are_refused(tiny_model_dir, tmp_path, clip_files,
                                                                          capsys):
    """The algorithm's version was recorded but never read: an old model would have read new chromagrams."""
    import prepare_training

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns("evaluation"))
    preprocessing = json.loads((model / "preprocessing.json").read_text())
    (model / "preprocessing.json").write_text(json.dumps({**preprocessing, "algorithm_version": 0}))
    assert predict.main(["-m", str(model), str(clip_files / "one.wav")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "algorithm version 0; this code computes version 1" in err
    from instrument_classifier.leaderboard import load_problem

    assert "algorithm version 0" in load_problem(model)  # so --best skips it for the next model
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_model_dir.parent.parent, dataset, ignore=shutil.ignore_patterns("models", "training-data"))
    record = json.loads((dataset / "features" / "features.json").read_text())
    (dataset / "features" / "features.json").write_text(json.dumps({**record, "algorithm_version": 0}))
    assert prepare_training.main([str(dataset)]) == 2
    assert "computed by version 0 of the chromagram algorithm" in capsys.readouterr().err


def test_cli_script_end_to_end(tiny_model_dir, predictor, clip_files):
    """The real script in a subprocess: labels on stdout, only one-line messages on stderr."""
    run = subprocess.run([sys.executable, str(REPO / "predict.py"), "-m", str(tiny_model_dir), "--json",
                          str(clip_files / "one.wav"), str(clip_files / "text.txt")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 1
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert records[0]["label"] == predictor.predict_file(clip_files / "one.wav").label
    assert records[1]["label"] is None and "unsupported" in records[1]["error"]
    assert all(line.startswith("predict.py: ") for line in run.stderr.splitlines()), run.stderr

"""The learning stage: prepare_training.py -> train.py -> evaluate.py -> analyze_errors.py -> leaderboard.py.

Unit tests use synthetic arrays with known answers; one tiny end-to-end run
(56 generated clips, 2 epochs) is shared by the module.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analyze_errors
import evaluate
import leaderboard
import prepare_training
import train
from conftest import assert_one_line_error, run_script
from instrument_classifier.cli import UserError
from instrument_classifier.scaling import ChromagramScaler, to_model_input
from instrument_classifier.training_data import instrument_split, load_training_data, random_split

MODEL_FILES = {"model.keras", "preprocessing.json", "config.json", "model_summary.txt", "learning_curves.csv",
               "predictions.csv", "final_metrics.csv"}


# ---------------------------------------------------------------------------
# Fixtures: one tiny dataset with features, one tiny trained model


@pytest.fixture(scope="module")
def dataset(tiny_dataset, tmp_path_factory) -> Path:
    """A writable copy of the tiny dataset, with features."""
    from instrument_classifier.feature_extraction import extract_dataset

    copy = tmp_path_factory.mktemp("learning") / "tiny-notes"
    shutil.copytree(tiny_dataset, copy)
    extract_dataset(copy, quiet=True, jobs=1)
    return copy


@pytest.fixture(scope="module")
def model_dir(dataset) -> Path:
    """A model trained for 2 epochs by train.py, evaluated by it."""
    assert prepare_training.main([str(dataset)]) == 0
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main([str(dataset), "--epochs", "2", "--seed", "3", "-q"]) == 0
    path = Path(out.getvalue().strip().splitlines()[-1])  # the last line is the model folder
    assert path.parent == dataset / "models"
    return path


# ---------------------------------------------------------------------------
# Units


def to_numpy(tensor) -> np.ndarray:
    """A layer's output as an array on any Keras backend (np.asarray refuses torch's tensors that carry a gradient)."""
    import keras

    return keras.ops.convert_to_numpy(tensor)


def test_scaler_round_trips_through_json():
    rng = np.random.default_rng(0)
    x = rng.random((10, 44, 115)).astype(np.float32)
    scaler = ChromagramScaler().fit(x)
    again = ChromagramScaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(scaler.transform(x), again.transform(x))
    scaled = scaler.transform(x)
    assert abs(scaled.mean()) < 1e-4 and abs(scaled.std() - 1) < 1e-3
    assert to_model_input(x, scaler).shape == (10, 44, 115, 1)
    with pytest.raises(UserError):
        ChromagramScaler.from_dict({"kind": "other"})


def synthetic_parameters(n_per_instrument=10, families=("piano", "organ", "guitar"), instruments_per_family=5):
    rows = []
    for f, family in enumerate(families):
        for i in range(instruments_per_family):
            for _ in range(n_per_instrument):
                rows.append({"sample_id": len(rows), "family_name": family, "instrument_id": 8 * f + i + 1})
    return pd.DataFrame(rows)


def test_random_split_is_stratified_and_seeded():
    parameters = synthetic_parameters()
    labels = parameters["family_name"]
    split = random_split(labels, seed=1)
    counts = pd.crosstab(labels, split)
    assert (counts["test"] == 10).all() and (counts["valid"] == 10).all() and (counts["train"] == 30).all()
    np.testing.assert_array_equal(split, random_split(labels, seed=1))
    assert (split != random_split(labels, seed=2)).any()


def test_a_seed_gives_the_same_split_in_every_process():
    """Python salts string hashes per process: a split that followed a set's order changed from run to run."""
    import subprocess
    import sys

    code = ("from instrument_classifier.training_data import random_split; import pandas as pd; "
            "labels = pd.Series([f'class-{k % 7}' for k in range(140)]); print(''.join(s[1] for s in "
            "random_split(labels, seed=3)))")
    splits = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": salt}, cwd=Path(__file__).parent.parent
                             ).stdout for salt in ("1", "2", "3")}
    assert len(splits) == 1 and len(splits.pop().strip()) == 140


def test_a_small_class_keeps_a_training_clip_and_every_split_is_checked():
    from instrument_classifier.training_data import check_split

    split = random_split(pd.Series(["a"] * 4), seed=0, valid_fraction=0.45, test_fraction=0.45)
    assert list(split).count("train") == 1 and {"valid", "test"} <= set(split)  # fractions allowed, 4 clips
    labels = pd.Series(["a", "a", "a", "b", "b", "b"])
    with pytest.raises(UserError, match="the test split has no samples of class 'b'"):
        check_split(labels, np.array(["train", "valid", "test", "train", "valid", "valid"], dtype=object))


def test_instrument_split_holds_whole_instruments_out():
    parameters = synthetic_parameters()
    split = instrument_split(parameters, parameters["family_name"], seed=0)
    per_instrument = pd.Series(split).groupby(parameters["instrument_id"]).nunique()
    assert (per_instrument == 1).all()  # every instrument lies in exactly one split
    per_family = pd.crosstab(parameters["family_name"], split)
    assert (per_family > 0).all().all()  # and every family is in every split
    with pytest.raises(UserError, match="at least 3 instruments"):
        small = synthetic_parameters(instruments_per_family=2)
        instrument_split(small, small["family_name"])


def test_pitch_layers_transpose():
    from instrument_classifier.augmentation import RandomPitchShift
    from instrument_classifier.models import PitchMax, PitchWindow

    x = np.zeros((2, 4, 60, 1), np.float32)
    x[:, :, 10, 0] = 1.0
    window = to_numpy(PitchWindow(positions=30, span=37, fill_value=-1.0)(x))
    assert window.shape == (2, 4, 66, 1) and window[0, 0, 10, 0] == 1 and (window[:, :, 60:] == -1).all()
    np.testing.assert_array_equal(to_numpy(PitchWindow(positions=10, span=5)(x)), x[:, :, :14])
    pooled = to_numpy(PitchMax()(np.moveaxis(np.stack([x[..., 0], 2 * x[..., 0]]), 0, -1)))
    assert pooled.shape == (2, 4, 2) and (pooled == [1, 2]).all()
    # Every cell distinct (bin / 100 + frame), so a transposed example can be told from any other.
    ramp = (np.arange(60)[None, :] / 100 + np.arange(4)[:, None]).astype(np.float32)
    x = np.broadcast_to(ramp[None, :, :, None], (64, 4, 60, 1)).copy()
    layer = RandomPitchShift(max_shift=3, fill_value=-5.0, seed=0)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    out = to_numpy(layer(x, training=True))
    shifts = np.rint(30 - 100 * out[:, 0, 30, 0]).astype(int)  # bin 30 now holds what bin 30 - shift held
    for example, shift in zip(out, shifts):  # the whole example moved by one whole number, filled at the edge
        expected = np.full_like(ramp, -5.0)
        if shift >= 0:
            expected[:, shift:] = ramp[:, :60 - shift]
        else:
            expected[:, :shift] = ramp[:, -shift:]
        np.testing.assert_array_equal(example[..., 0], expected)
    assert set(shifts) == set(range(-3, 4)), sorted(set(shifts))  # every transposition of +-3 occurs


@pytest.mark.parametrize("kernel, strides, padding", [((8, 37), (4, 1), "valid"), ((3, 5), (2, 1), "valid"),
                                                      ((8, 37), (4, 1), "same")])
def test_harmonic_templates_compute_the_conv2d_they_replace(kernel, strides, padding):
    """The fast template layer is Conv2D with the same weights (the fast path, and the fallback for 'same')."""
    import keras

    from instrument_classifier.models import HarmonicTemplates

    x = np.random.default_rng(0).normal(size=(3, 44, 124, 1)).astype(np.float32)
    reference = keras.layers.Conv2D(6, kernel, strides=strides, padding=padding)
    fast = HarmonicTemplates(6, kernel, strides=strides, padding=padding)
    expected = to_numpy(reference(x))
    fast.build(x.shape)
    fast.set_weights(reference.get_weights())
    got = to_numpy(fast(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_random_level_plays_louder_or_quieter_and_cuts_the_top():
    from instrument_classifier.augmentation import RandomLevel

    rng = np.random.default_rng(0)
    x = np.full((64, 4, 20, 1), -2.0, np.float32)        # -2: silence
    x[:, :, 5:15] = rng.uniform(-1.0, 1.0, (64, 4, 10, 1)).astype(np.float32)
    gain = RandomLevel(max_cut_db=10, max_boost_db=10, db_step=0.01, floor=-2.0, ceiling=0.95,
                       lowpass_probability=0.0, seed=1)
    np.testing.assert_array_equal(to_numpy(gain(x, training=False)), x)
    out = to_numpy(gain(x, training=True))
    assert (out[x == -2.0] == -2.0).all()                 # silence stays silence
    assert out.max() <= 0.95 and out.min() >= -2.0        # saturates at 0 dB, never below the floor
    for before, after in zip(x, out):                     # one gain per example, within +-10 dB
        inside = (before > -2.0) & (after < 0.95) & (after > -2.0)
        shift = after[inside] - before[inside]
        np.testing.assert_allclose(shift, shift[0], atol=1e-6)
        assert abs(shift[0]) <= 0.1 + 1e-6
    assert np.ptp([np.median(a - b) for a, b in zip(out, x)]) > 0.05
    lowpass = RandomLevel(max_cut_db=0, max_boost_db=0, db_step=0.01, floor=-2.0, lowpass_probability=1.0,
                          lowest_cutoff=8, seed=1)
    cut = to_numpy(lowpass(x, training=True))
    first_cut = []
    for before, after in zip(x, cut):                     # everything from some bin >= 8 upwards is silence
        changed = np.flatnonzero((after != before).any(axis=(0, 2)))
        if len(changed):
            first = changed[0]
            assert first >= 8 and (after[:, first:] == -2.0).all()
            np.testing.assert_array_equal(after[:, :first], before[:, :first])
            first_cut.append(first)
    # The cutoff is uniform in bins 8..20 and the note sounds up to bin 14: about 7 in 13 examples lose
    # part of it, at different bins.
    assert len(first_cut) >= 20 and len(set(first_cut)) >= 5, first_cut


def test_the_training_low_pass_is_an_option_of_the_network():
    """``--model-option lowest_cutoff=86`` reaches the augmentation (the band-limited ablation, README)."""
    from instrument_classifier.models import build_model

    default = build_model("relative-harmonic", (44, 115, 1), 7).get_layer("level")
    assert (default.lowest_cutoff, default.lowpass_probability) == (100, 0.5)
    level = build_model("relative-harmonic", (44, 115, 1), 7,
                        options={"lowest_cutoff": 86, "lowpass_probability": 0.25}).get_layer("level")
    assert (level.lowest_cutoff, level.lowpass_probability) == (86, 0.25)


def test_harmonic_templates_are_transposition_invariant():
    """Up to the random shift and the register input, a transposed note gives the same features."""
    import keras

    from instrument_classifier.models import build_model

    model = build_model("harmonic", (44, 115, 1), 7, floor=-1.0, seed=0)
    timbre = keras.Model(model.input, model.get_layer("max_over_pitch").output)
    rng = np.random.default_rng(0)
    # A "note" at bin 36 and the 3 octaves above it; every template position that sees any of it
    # (36 - 36 .. 36 + 36) is one of the 88 candidate fundamentals, for the note and 15 semitones higher.
    note = np.full((1, 44, 115, 1), -1.0, np.float32)
    note[0, :, 36:73, 0] = rng.random((44, 37))
    moved = np.full_like(note, -1.0)
    moved[0, :, 51:88] = note[0, :, 36:73]
    np.testing.assert_allclose(to_numpy(timbre(note)), to_numpy(timbre(moved)), rtol=1e-5, atol=1e-5)


def test_fine_labels_sum_into_families():
    import keras

    from instrument_classifier.models import GroupSum
    from instrument_classifier.losses import AllowedSetCrossEntropy, allowed_targets, group_accuracy

    groups = np.array([0, 0, 1, 2, 2, 2])                 # six instruments in three families
    p = np.array([[0.1, 0.2, 0.3, 0.1, 0.1, 0.2]], np.float32)
    np.testing.assert_allclose(to_numpy(GroupSum(groups, 3)(p)), [[0.3, 0.3, 0.4]], rtol=1e-6)
    masks = allowed_targets([2], groups)
    np.testing.assert_array_equal(masks, [[0, 0, 0, 1, 1, 1]])
    loss = AllowedSetCrossEntropy()
    # A family mask scores the family's summed probability; a one-hot the instrument's.
    assert float(loss(masks, p)) == pytest.approx(-np.log(0.4), rel=1e-5)
    assert float(loss(np.eye(6, dtype=np.float32)[[2]], p)) == pytest.approx(-np.log(0.3), rel=1e-5)
    smoothed = AllowedSetCrossEntropy(label_smoothing=0.1)
    assert float(smoothed(masks, p)) == pytest.approx(0.9 * -np.log(0.4) + 0.1 * -np.log(p).mean(), rel=1e-5)
    metric = group_accuracy(groups, 3)
    metric.update_state(np.eye(6, dtype=np.float32)[[3, 0]], np.tile(p, (2, 1)))  # family 2 wins: right, wrong
    assert float(metric.result()) == pytest.approx(0.5)
    restored = keras.layers.deserialize(keras.layers.serialize(GroupSum(groups, 3)))
    assert restored.groups == list(groups) and restored.n_groups == 3


def test_architectures():
    from instrument_classifier.architectures import DEFAULT_ARCHITECTURE
    from instrument_classifier.models import ARCHITECTURES, build_model

    assert set(ARCHITECTURES) == {"reference", "harmonic", DEFAULT_ARCHITECTURE} and DEFAULT_ARCHITECTURE != "harmonic"
    reference = build_model("reference", (44, 115, 1), 7)
    assert reference.count_params() == 220_807  # "about 221k parameters"
    default = build_model(DEFAULT_ARCHITECTURE, (44, 115, 1), 56)  # one output per instrument
    assert default.count_params() < reference.count_params() / 4
    x = np.random.default_rng(0).random((3, 44, 115, 1)).astype(np.float32)
    for model, n in ((reference, 7), (default, 56)):
        p = to_numpy(model(x, training=False))
        assert p.shape == (3, n)
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    with pytest.raises(UserError, match="unknown architecture"):
        build_model("nope", (44, 115, 1), 7)


def test_random_layers_draw_different_streams():
    """Layers seeded alike would drop the same units, or tie a transposition to a gain."""
    from instrument_classifier.models import build_model

    for arch in ("reference", "harmonic", "relative-harmonic"):
        model = build_model(arch, (44, 115, 1), 7, seed=5, db_step=0.1)
        seeds = [layer.seed for layer in model.layers if getattr(layer, "seed", None) is not None]
        assert len(seeds) >= 4 and len(set(seeds)) == len(seeds), (arch, seeds)


def test_the_default_network_hears_no_level():
    """A clip played louder or quieter (a gain: a constant on every sounding cell) gets the same probabilities."""
    from instrument_classifier.models import build_model

    one_db = 0.05
    model = build_model("relative-harmonic", (44, 115, 1), 7, floor=-3.0, db_step=one_db, seed=1)
    rng = np.random.default_rng(0)
    x = np.full((2, 44, 115, 1), -3.0, np.float32)                 # silence
    x[:, 5:30, 20:70] = rng.uniform(0.0, 50 * one_db, (2, 25, 50, 1))  # a note spanning 50 dB
    louder = x.copy()
    louder[x > -3.0] += 20 * one_db
    np.testing.assert_allclose(to_numpy(model(x)), to_numpy(model(louder)), atol=1e-5)
    harmonic = build_model("harmonic", (44, 115, 1), 7, floor=-3.0, db_step=one_db, seed=1)
    assert np.abs(to_numpy(harmonic(x)) - to_numpy(harmonic(louder))).max() > 1e-3  # absolute levels do


def test_random_equaliser_colours_sounding_cells_smoothly():
    from instrument_classifier.augmentation import RandomEqualiser

    layer = RandomEqualiser(18.0, 9.0, db_step=0.05, floor=-3.0, ceiling=3.0, seed=2)
    x = np.full((8, 44, 115, 1), -3.0, np.float32)
    x[:, :, 10:100] = 0.0
    y = to_numpy(layer(x, training=True))
    np.testing.assert_array_equal(y[:, :, :10], -3.0)                 # silence stays silent
    curve = (y[:, 0, 10:100, 0] - x[:, 0, 10:100, 0]) / 0.05          # dB added per pitch bin
    assert np.abs(curve).max() > 3                                   # it colours,
    assert np.abs(np.diff(curve, n=2, axis=1)).max() < 1.0           # smoothly along pitch,
    np.testing.assert_allclose(y[:, 0], y[:, 20])                    # the same in every frame
    assert np.abs(curve[0] - curve[1]).max() > 1                     # and differently per example
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)


def test_random_equaliser_jitter_moves_each_semitone_on_its_own():
    from instrument_classifier.augmentation import RandomEqualiser

    smooth = RandomEqualiser(0.0, 0.0, db_step=0.05, floor=-3.0, ceiling=3.0, seed=2, max_jitter_db=6.0)
    x = np.full((8, 44, 115, 1), -3.0, np.float32)
    x[:, :, 10:100] = 0.0
    y = to_numpy(smooth(x, training=True))
    np.testing.assert_array_equal(y[:, :, :10], -3.0)                 # silence stays silent
    curve = (y[:, 0, 10:100, 0] - x[:, 0, 10:100, 0]) / 0.05
    assert np.abs(curve).max() <= 6.0 + 1e-3 and np.abs(curve).max() > 4   # within +-6 dB, and uses it
    assert np.abs(np.diff(curve, axis=1)).mean() > 2                  # neighbours move independently
    np.testing.assert_allclose(y[:, 0], y[:, 30])                     # the same in every frame


def test_swell_cut_brings_a_swelling_note_to_its_peak_after_its_onset():
    """A bowed note that swells for 8 frames reaches its peak 1-3 frames after its onset frame, which stays."""
    from instrument_classifier.augmentation import RandomSwellCut

    one_db, floor = 0.05, -3.0
    x = np.full((64, 44, 115, 1), floor, np.float32)
    swell = np.minimum(np.arange(30), 9) * 1.0 - 9.0                  # dB: -9 at the onset, the peak 9 frames on
    for frame in range(30):
        x[:, 4 + frame, 40:60, 0] = (swell[frame] - np.arange(20)) * one_db + 0.001 * frame  # frames distinct
    layer = RandomSwellCut(0.5, keep=2, db_step=one_db, floor=floor, seed=3)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    y = to_numpy(layer(x, training=True))
    level = y.max(axis=(2, 3))
    peak_frame = np.argmax(level >= level.max(axis=1, keepdims=True) - 1 * one_db, axis=1)
    cut = peak_frame < 12
    assert 16 <= cut.sum() <= 48                                      # about half the examples
    np.testing.assert_array_equal(y[~cut], x[~cut])                   # the others untouched
    assert set(peak_frame[cut] - 4) <= {1, 2, 3} and len(set(peak_frame[cut])) > 1  # peak 1-3 frames on
    np.testing.assert_array_equal(y[cut, :5], x[cut, :5])             # the onset frame stays
    for before, after in zip(x[cut], y[cut]):                         # the rest moved earlier, silence after
        dropped = int(np.argmax(np.all(before == after[5][None], axis=(1, 2)))) - 5
        np.testing.assert_array_equal(after[5:44 - dropped], before[5 + dropped:])
        assert (after[44 - dropped:] == floor).all()
    from instrument_classifier.models import build_model

    swell = build_model("relative-harmonic", (44, 115, 1), 7, options={"swell_cut_probability": 0.5})
    assert swell.get_layer("swell_cut").probability == 0.5            # --model-option swell_cut_probability=0.5


# ---------------------------------------------------------------------------
# End to end


def test_calibration_error_is_the_gap_between_confidence_and_accuracy():
    """ECE (Guo et al. 2017): 0 for probabilities that are right as often as they say, the gap otherwise."""
    from instrument_classifier.metrics import calibration_bins, calibration_error, expected_calibration_error

    sure = np.ones(10)
    assert calibration_error(np.ones(10, bool), sure) == 0
    assert calibration_error(np.arange(10) < 5, sure) == pytest.approx(0.5)  # certain, and right half the time
    assert calibration_error(np.arange(10) < 7, np.full(10, 0.7)) == pytest.approx(0)
    bins = calibration_bins(np.array([True, False, True, True]), np.array([0.95, 0.95, 0.5, 1 / 15]))
    assert bins[["low", "n", "accuracy"]].to_numpy() == pytest.approx(np.array([[0, 1, 1], [7 / 15, 1, 1],
                                                                                [14 / 15, 2, 0.5]]))
    # Labels drawn from the probabilities themselves: calibrated; the same probabilities sharpened: overconfident.
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.full(7, 0.5), size=20_000)
    y = (rng.random((20_000, 1)) > proba.cumsum(axis=1)).sum(axis=1)
    sharp = proba ** 3 / (proba ** 3).sum(axis=1, keepdims=True)
    assert expected_calibration_error(y, proba) < 0.02 < 0.1 < expected_calibration_error(y, sharp)


def test_final_metrics_read_for_the_web_api_have_no_nan(tmp_path):
    """An undefined AUC (one class in a split) is NaN in the CSV; as a bare NaN the API's JSON would not parse."""
    from instrument_classifier.metrics import read_final_metrics

    (tmp_path / "final_metrics.csv").write_text("split,error,auc,loss\ntest,0.25,nan,inf\nvalid,0.5,0.75,x\n")
    metrics = read_final_metrics(tmp_path)
    assert metrics == {"test": {"error": 0.25, "auc": None, "loss": None}, "valid": {"error": 0.5, "auc": 0.75}}
    json.dumps(metrics, allow_nan=False)
    assert read_final_metrics(tmp_path / "missing") == {}


def test_final_metrics_count_the_answers_the_predictions_give():
    """Two probabilities that round to a tie in predictions.csv: the error follows its predicted column."""
    from instrument_classifier.metrics import metrics_table, predictions_table

    proba = np.array([[0.4999996, 0.5000004], [0.9, 0.1]])
    table = predictions_table(pd.DataFrame({"sample_id": [0, 1]}), np.array(["test", "test"]), np.array([1, 0]),
                              proba, ["a", "b"])
    assert list(table["p_a"]) == [0.5, 0.9] and list(table["p_b"]) == [0.5, 0.1]  # stored to 6 decimals
    row = metrics_table(table, ["a", "b"], ["test"]).iloc[0]
    assert list(table["predicted"]) == ["b", "a"] and row["error"] == 0 and row["accuracy"] == 1


def test_the_best_epoch_is_the_best_before_the_loss_diverged():
    """No epoch after a NaN validation loss is kept, though its loss be lower: its weights went through NaN."""
    import keras

    from instrument_classifier.training import MONITOR, _BestWeights

    network = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    best = _BestWeights()
    best.set_model(network)
    for losses, kept in (([0.9, 0.7, 0.8, float("nan"), 0.5], (2, 0.7, 1.0)),
                         ([float("nan"), 0.5], (1, float("inf"), 0.0))):  # none: epoch 1 stands in, no loss
        best.on_train_begin()
        for epoch, loss in enumerate(losses):
            network.layers[0].kernel.assign([[float(epoch)]])
            best.on_epoch_end(epoch, {MONITOR: loss})
        assert (best.best_epoch, best.best_loss, best.weights[0][0, 0]) == kept


def test_macro_auc_is_the_mean_of_the_one_vs_rest_aucs():
    from sklearn.metrics import roc_auc_score

    from instrument_classifier.metrics import macro_auc

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    proba = rng.dirichlet(np.ones(3), 300) + 0.5 * np.eye(3)[y]  # better than chance, unequally by class
    proba /= proba.sum(axis=1, keepdims=True)
    assert macro_auc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert macro_auc(np.array([0, 0, 1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])) == 1.0


def test_confusion_plot_normalises_by_the_true_class(monkeypatch, tmp_path):
    from instrument_classifier import evaluation, plots

    figures = []

    def keep(*size):
        figures.append(plots.figure(*size))
        return figures[-1]

    monkeypatch.setattr(evaluation, "figure", keep)
    evaluation.plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], "t", tmp_path / "confusion.png")
    counts, normalised = figures[0].axes[:2]
    assert [t.get_text() for t in counts.texts] == ["3", "1", "0", "4"]
    assert [t.get_text() for t in normalised.texts] == ["0.75", "0.25", "0.00", "1.00"]  # rows: true classes


def test_error_interval_says_what_the_number_of_clips_allows():
    """A 95 % interval beside every error: the Wilson interval, wider for fewer clips, never outside [0, 1]."""
    from instrument_classifier.metrics import error_interval

    assert error_interval(365, 2000) == pytest.approx((0.1662, 0.2000), abs=1e-4)  # 18.25 %, the default's test
    low, high = error_interval(73, 400)  # the same rate on a fifth of the clips
    assert low < 0.1662 and high > 0.2000 and low < 73 / 400 < high
    assert error_interval(0, 20)[0] == 0 and error_interval(20, 20)[1] == 1
    assert all(np.isnan(error_interval(0, 0)))
    # Over many draws of 300 clips at a true rate of 30 %, about 95 % of the intervals hold it.
    rng = np.random.default_rng(0)
    held = [low <= 0.3 <= high for low, high in (error_interval(k, 300) for k in rng.binomial(300, 0.3, 400))]
    assert 0.92 <= np.mean(held) <= 0.98


def test_the_scaler_learns_from_the_training_clips_only(model_dir, dataset):
    """The valid and test clips stay unseen: their levels must not reach the scaler either."""
    data = load_training_data(dataset, dataset / "training-data")
    scaler = json.loads((model_dir / "preprocessing.json").read_text())["scaler"]
    chromagrams = np.asarray(data.chromagrams, dtype=np.float64)
    assert scaler["mean"] == pytest.approx(chromagrams[data.split == "train"].mean(), rel=1e-9)
    assert scaler["mean"] != pytest.approx(chromagrams.mean(), rel=1e-6)


def test_training_visits_its_clips_in_a_new_order_every_epoch(dataset):
    from instrument_classifier.training import _Run, training_settings

    run = _Run(load_training_data(dataset, dataset / "training-data"), training_settings("relative-harmonic"), seed=5)
    assert run.train.shuffle and not np.array_equal(run.train.order(0), run.train.order(1))
    assert sorted(run.train.order(1)) == list(range(len(run.train.rows)))


def test_the_saved_epoch_is_chosen_on_the_plain_cross_entropy():
    """Not on the loss with label smoothing: the epoch whose probabilities are best, as final_metrics reports."""
    import keras

    from instrument_classifier.training import _BestWeights

    network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best = _BestWeights()
    best.set_model(network)
    best.on_train_begin()
    best.on_epoch_end(0, {"val_loss": 1.0, "val_crossentropy": 0.5})
    best.on_epoch_end(1, {"val_loss": 0.9, "val_crossentropy": 0.6})
    assert best.best_epoch == 1


def test_a_small_class_keeps_a_validation_and_a_test_clip():
    from instrument_classifier.training_data import _split_counts

    assert _split_counts(4, 0.1, 0.1) == (1, 1)
    assert _split_counts(10, 0.2, 0.2) == (2, 2) and _split_counts(2, 0.2, 0.2) == (0, 0)


def test_model_folder_holds_everything(model_dir):
    assert MODEL_FILES <= {p.name for p in model_dir.iterdir()}
    config = json.loads((model_dir / "config.json").read_text())
    for key in ("arch", "epochs", "batch_size", "seed", "dataset", "versions", "model_id", "best_epoch"):
        assert key in config
    assert config["seed"] == 3 and config["epochs"] == 2 and config["model_id"] == model_dir.name
    assert config["fine_labels"] and len(config["fine_classes"]) > 7  # trained on instruments ...
    assert model_dir.name.endswith(f"-{config['arch']}-s3") and model_dir.name[:8].isdigit()
    preprocessing = json.loads((model_dir / "preprocessing.json").read_text())
    assert {"class_names", "scaler", "features", "target"} <= set(preprocessing)
    metrics = pd.read_csv(model_dir / "final_metrics.csv")
    assert list(metrics["split"]) == ["train", "valid", "test"]
    assert {"error", "accuracy", "auc"} <= set(metrics.columns)
    assert (metrics["error_low"] <= metrics["error"]).all() and (metrics["error"] <= metrics["error_high"]).all()
    predictions = pd.read_csv(model_dir / "predictions.csv")
    assert len(predictions) == 56 and set(predictions["split"]) == {"train", "valid", "test"}
    assert {"sample_id", "true", "predicted"} <= set(predictions.columns)
    proba = predictions[[f"p_{c}" for c in preprocessing["class_names"]]].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-4)  # ... predicts the 7 families
    assert len(preprocessing["class_names"]) == 7
    curves = pd.read_csv(model_dir / "learning_curves.csv")
    assert len(curves) == 2 and {"loss", "val_loss", "error", "val_error"} <= set(curves.columns)
    for prefix in ("", "val_"):  # each split's error is its own accuracy's complement
        np.testing.assert_allclose(curves[f"{prefix}error"], 1 - curves[f"{prefix}accuracy"], atol=1e-6)
    assert not np.allclose(curves["val_accuracy"], curves["accuracy"])
    # The saved epoch is the one with the lowest validation cross-entropy, without label smoothing:
    # the families' plain cross-entropy, as final_metrics.csv reports it for the saved model.
    best = curves.loc[curves["val_crossentropy"].idxmin()]
    assert config["best_epoch"] == best["epoch"]
    valid = metrics.set_index("split").loc["valid"]
    assert valid["loss"] == pytest.approx(best["val_crossentropy"], rel=1e-3)
    assert 1 - valid["error"] == pytest.approx(best["val_accuracy"], abs=1e-6)
    # train.py evaluated it too.
    assert (model_dir / "evaluation" / "index.html").is_file()
    # Nothing else in models/: the temporary folder was renamed.
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]


def test_model_folder_alone_predicts(model_dir, dataset):
    from instrument_classifier.feature_store import load_features
    from instrument_classifier.model_bundle import load_model_dir

    bundle = load_model_dir(model_dir)
    chromagrams, _, _ = load_features(dataset)
    proba = bundle.predict_proba(chromagrams[:5])
    stored = pd.read_csv(model_dir / "predictions.csv").head(5)
    np.testing.assert_allclose(proba, stored[[f"p_{c}" for c in bundle.class_names]].to_numpy(), atol=1e-5)
    assert bundle.predict(chromagrams[:5]) == list(stored["predicted"])


def test_same_seed_same_result(dataset, model_dir, tmp_path):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert train.main([str(dataset), "--epochs", "2", "--seed", "3", "-q", "--no-evaluate",
                           "--models-dir", str(tmp_path)]) == 0
    again = Path(out.getvalue().strip().splitlines()[-1])
    assert not (again / "evaluation").exists()
    first = pd.read_csv(model_dir / "learning_curves.csv")
    second = pd.read_csv(again / "learning_curves.csv")
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    pd.testing.assert_frame_equal(pd.read_csv(model_dir / "predictions.csv"), pd.read_csv(again / "predictions.csv"))


def test_instrument_split_trains_on_the_heard_instruments(dataset, tmp_path, capsys):
    """Held-out instruments have no fine class; they are scored on their family."""
    training_dir = tmp_path / "by-instrument"
    assert prepare_training.main([str(dataset), "--split", "instrument", "--output-dir", str(training_dir)]) == 0
    status, out, _ = run_script(train, [dataset, "--training-data", training_dir, "--epochs", "1", "-q",
                                        "--no-evaluate", "--models-dir", tmp_path / "models"], capsys)
    assert status == 0
    model_dir = Path(out.strip().splitlines()[-1])
    config = json.loads((model_dir / "config.json").read_text())
    predictions = pd.read_csv(model_dir / "predictions.csv")
    heard = {str(i) for i in predictions.loc[predictions["split"] == "train", "instrument_id"]}
    held_out = {str(i) for i in predictions.loc[predictions["split"] == "test", "instrument_id"]}
    assert set(config["fine_classes"]) == heard and not heard & held_out
    assert predictions.loc[predictions["split"] == "test", "predicted"].notna().all()


def test_reference_architecture_trains_one_unit_per_family(dataset, tmp_path, capsys):
    from instrument_classifier.model_bundle import load_model_dir

    status, out, _ = run_script(train, [dataset, "--arch", "reference", "--epochs", "1", "-q", "--no-evaluate",
                                        "--models-dir", tmp_path], capsys)
    assert status == 0
    model_dir = Path(out.strip().splitlines()[-1])
    config = json.loads((model_dir / "config.json").read_text())
    assert config["arch"] == "reference" and config["fine_labels"] is False and config["parameters"] == 220_807
    bundle = load_model_dir(model_dir)
    assert bundle.model.output_shape == (None, 7) and len(bundle.class_names) == 7


def test_no_fine_labels_trains_one_unit_per_family(dataset, model_dir, tmp_path, capsys):
    """The default network learns a unit per instrument (test_model_folder_holds_everything); this one per family."""
    from instrument_classifier.model_bundle import load_model_dir

    status, out, _ = run_script(train, [dataset, "--no-fine-labels", "--epochs", "1", "-q", "--no-evaluate",
                                        "--models-dir", tmp_path], capsys)
    assert status == 0
    folder = Path(out.strip().splitlines()[-1])
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == json.loads((model_dir / "config.json").read_text())["arch"]
    assert config["fine_labels"] is False and not config.get("fine_classes")
    bundle = load_model_dir(folder)
    assert bundle.model.output_shape == (None, 7) and bundle.class_names == json.loads(
        (model_dir / "preprocessing.json").read_text())["class_names"]


def test_killed_training_leaves_no_folder(dataset, model_dir, tmp_path):
    """SIGTERM mid-training: a one-line message, exit status 143, nothing leaderboard.py could rank."""
    import signal
    import subprocess
    import sys

    models_dir = tmp_path / "models"
    process = subprocess.Popen([sys.executable, "train.py", str(dataset), "--epochs", "500", "--models-dir",
                                str(models_dir)], cwd=Path(train.__file__).parent, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # the run's temporary folder exists once training has started
        if line.startswith("Epoch 2/"):
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143 and err.strip().splitlines() == ["train.py: terminated"], err
    assert not models_dir.exists()  # not even the models folder it made


def test_fine_classes_are_the_instruments_of_the_training_split():
    from instrument_classifier.training import fine_classes
    from instrument_classifier.training_data import TrainingData

    parameters = synthetic_parameters(n_per_instrument=2, instruments_per_family=2)  # 3 families x 2 instruments
    split = np.where(parameters["instrument_id"] == 2, "test", "train")                # instrument 2 held out
    labels = parameters["family_name"].map({"guitar": 0, "organ": 1, "piano": 2}).to_numpy()
    data = TrainingData(dataset_dir=Path("."), training_dir=Path("."), chromagrams=np.zeros((12, 1, 1)),
                        sample_id=parameters["sample_id"].to_numpy(), y=labels, split=split, parameters=parameters,
                        class_names=["guitar", "organ", "piano"], scaler=None, feature_params={},
                        record={"target": "family"})
    names, groups, fine_y = fine_classes(data)
    assert names == ["1", "9", "10", "17", "18"]            # instrument ids in numeric order; 2 is not heard
    assert list(groups) == [2, 1, 1, 0, 0]                 # 1, 2: piano; 9, 10: organ; 17, 18: guitar
    assert (fine_y[parameters["instrument_id"] == 2] == -1).all()
    data.record["target"] = "instrument"
    with pytest.raises(UserError, match="prepared for families \\(prepare_training.py --target family\\)"):
        fine_classes(data)


def test_evaluation_report_is_complete_and_rerunnable(model_dir, capsys):
    report = model_dir / "evaluation"
    index = (report / "index.html").read_text()
    images = {"learning_curves.png", "error_by_pitch.png", "calibration.png"} | {
        f"{kind}_{split}.png" for kind in ("confusion", "roc", "per_class") for split in ("train", "valid", "test")}
    for name in images:
        assert (report / name).stat().st_size > 1000, name
        assert f'src="{name}"' in index
    assert "/" not in "".join(line.split('src="')[1].split('"')[0] for line in index.splitlines() if 'src="' in line)
    assert {"precision", "recall", "f1"} <= set(pd.read_csv(report / "per_class_metrics.csv").columns)
    # The confusion matrix: a row per true class, a column per predicted one, counting predictions.csv's clips.
    predictions = pd.read_csv(model_dir / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    confusion = pd.read_csv(report / "confusion_test.csv", index_col="true")
    for (true, predicted), clips in test.groupby(["true", "predicted"]):
        assert confusion.loc[true, predicted] == len(clips)
    assert confusion.to_numpy().sum() == len(test)
    # The reliability diagram's bins hold every clip of each split, and the ECE is their weighted gap.
    calibration, metrics = pd.read_csv(report / "calibration.csv"), pd.read_csv(report / "metrics.csv")
    for row in metrics.itertuples():
        bins = calibration[calibration["split"] == row.split]
        assert bins["n"].sum() == row.n
        assert row.ece == pytest.approx((bins["n"] * (bins["accuracy"] - bins["confidence"]).abs()).sum() / row.n)
    before = (report / "metrics.csv").read_text()
    status, out, _ = run_script(evaluate, [model_dir], capsys)
    assert status == 0 and "evaluation report" in out
    assert (report / "metrics.csv").read_text() == before
    assert not [p for p in report.iterdir() if p.name.startswith(".")]


def test_evaluate_on_another_dataset(model_dir, dataset, tmp_path, capsys):
    other = tmp_path / "other-font"
    shutil.copytree(dataset, other, ignore=shutil.ignore_patterns("models", "training-data"))
    status, _, _ = run_script(evaluate, [model_dir, "--dataset", other], capsys)
    assert status == 0
    sub = model_dir / "evaluation" / "other-font"
    assert (sub / "index.html").is_file() and (sub / "confusion_all.png").is_file()
    assert len(pd.read_csv(sub / "predictions.csv")) == 56
    # A run interrupted while it writes the report leaves the one before whole, its predictions too.
    pd.read_csv(sub / "predictions.csv").head(50).to_csv(sub / "predictions.csv", index=False)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("instrument_classifier.evaluation.plot_error_by_pitch", interrupted)
        assert run_script(evaluate, [model_dir, "--dataset", other], capsys)[0] == 130
    assert len(pd.read_csv(sub / "predictions.csv")) == 50
    assert not [p for p in sub.iterdir() if p.name.startswith(".")]
    # Re-evaluating on the own dataset keeps the other report and links to it.
    assert run_script(evaluate, [model_dir, "-q"], capsys)[0] == 0
    assert (sub / "index.html").is_file()
    assert 'href="other-font/index.html"' in (model_dir / "evaluation" / "index.html").read_text()


def test_clips_of_classes_the_model_does_not_know_are_left_out_with_a_word(model_dir, dataset, tmp_path, capsys):
    """They were dropped silently, and a one-class split leaked matplotlib's legend warning."""
    from instrument_classifier.feature_extraction import extract_dataset

    other = tmp_path / "with-drums"
    shutil.copytree(dataset, other, ignore=shutil.ignore_patterns("models", "training-data", "features"))
    parameters = pd.read_csv(other / "parameters.csv")
    parameters.loc[:3, "family_name"] = "percussive"
    parameters.to_csv(other / "parameters.csv", index=False)
    extract_dataset(other, quiet=True, jobs=1)
    status, _, err = run_script(evaluate, [model_dir, "--dataset", other], capsys)
    assert status == 0
    assert err.count("\n") == 1 and err.endswith(
        f"warning: {other}: left out 4 of 56 clips, of classes the model does not know (percussive)\n"), err
    assert len(pd.read_csv(model_dir / "evaluation" / "with-drums" / "predictions.csv")) == 52
    # One class only: no ROC curve to draw, and nothing on stderr about a legend.
    parameters.loc[parameters["family_name"] != "percussive", "family_name"] = "piano"
    parameters.to_csv(other / "parameters.csv", index=False)
    extract_dataset(other, quiet=True, jobs=1, overwrite=True)
    status, _, err = run_script(evaluate, [model_dir, "--dataset", other], capsys)
    assert status == 0 and err.count("\n") == 1 and "legend" not in err


def test_a_dataset_of_other_features_is_refused(model_dir, dataset, tmp_path, capsys):
    """Chromagrams of another floor would be read as if they were the model's: figures, not a refusal."""
    from instrument_classifier.feature_extraction import extract_dataset
    from instrument_classifier.features import ChromagramExtractor

    other = tmp_path / "other-floor"
    shutil.copytree(dataset, other, ignore=shutil.ignore_patterns("models", "training-data", "features"))
    extract_dataset(other, quiet=True, jobs=1, extractor=ChromagramExtractor(floor_db=-100.0))
    status, _, err = run_script(evaluate, [model_dir, "--dataset", other], capsys)
    assert_one_line_error(status, err, "were extracted with other parameters than the model was trained on "
                                       "(floor_db -100.0 there, -120.0 the model's)")
    assert not (model_dir / "evaluation" / "other-floor").exists()


def test_error_by_pitch_counts_each_clip_in_its_band():
    from instrument_classifier.evaluation import error_by_pitch

    predictions = pd.DataFrame({"split": ["test"] * 5 + ["valid"], "midi_number": [59, 60, 65, 66, 71, 60],
                                "correct": [False, True, False, True, True, False]})
    table = error_by_pitch(predictions, ["test", "valid"], band=6)
    test = table[table["split"] == "test"]
    assert list(test["midi_low"]) == [54, 60, 66] and list(test["midi_high"]) == [59, 65, 71]
    assert list(test["n"]) == [1, 2, 2] and list(test["errors"]) == [1, 1, 0]
    assert list(test["error"]) == [1.0, 0.5, 0.0]
    valid = table[table["split"] == "valid"]
    assert list(valid["n"]) == [0, 1, 0] and valid["error"].isna().tolist() == [True, False, True]


def test_analyze_errors_is_rerunnable(model_dir, capsys):
    for _ in range(2):
        status, out, _ = run_script(analyze_errors, [model_dir, "--split", "all"], capsys)
        assert status == 0 and "misclassified" in out
    errors_dir = model_dir / "evaluation" / "errors"
    predictions = pd.read_csv(model_dir / "predictions.csv")
    wrong = predictions[~predictions["correct"]]
    clips = sorted(errors_dir.glob("*.flac"))
    assert len(clips) == len(wrong) == len(pd.read_csv(errors_dir / "errors.csv"))
    page = (errors_dir / "index.html").read_text()
    for row in wrong.itertuples():
        name = f"{row.sample_id:06d}-true-{row.true}-pred-{row.predicted}"
        assert (errors_dir / f"{name}.flac").is_file() and (errors_dir / f"{name}.png").is_file()
        assert f'src="{name}.flac"' in page
    assert len(list(model_dir.parent.parent.joinpath("audio").glob("*.flac"))) == 56  # originals untouched
    # The default, --split test: the test clips' mistakes only.
    assert run_script(analyze_errors, [model_dir, "-q"], capsys)[0] == 0
    listed = pd.read_csv(errors_dir / "errors.csv")
    assert set(listed["split"]) <= {"test"} and len(listed) == len(wrong[wrong["split"] == "test"]) < len(wrong)


def copy_with_its_dataset(model_dir: Path, dataset: Path, models: Path) -> tuple[Path, Path]:
    """Copies of a model's dataset (without its models) and of the model, the model's config pointing at the copy."""
    shutil.copytree(model_dir.parent.parent, dataset, ignore=shutil.ignore_patterns("models"))
    model = models / model_dir.name
    shutil.copytree(model_dir, model, ignore=shutil.ignore_patterns("evaluation"))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "dataset": str(dataset)}))
    return dataset, model


def test_analyze_errors_refuses_a_clip_that_is_not_audio(model_dir, tmp_path, capsys):
    """A clip turned to text was copied onto the listening page, silently."""
    dataset, model = copy_with_its_dataset(model_dir, tmp_path / "dataset", tmp_path / "dataset" / "models")
    parameters = pd.read_csv(dataset / "parameters.csv").set_index("sample_id")
    for sample_id in pd.read_csv(model / "predictions.csv").query("not correct")["sample_id"]:
        (dataset / parameters.loc[sample_id, "audio_file"]).write_text("text")
    assert_one_line_error(*run_script(analyze_errors, [model, "--split", "all"], capsys)[::2], "is not readable audio")
    assert not (model / "evaluation" / "errors").exists()


def test_error_plots_reuse_one_figure_yet_show_each_clip_alone(tmp_path):
    """The listening page's pictures come from one reused figure: each must be that clip's, drawn alone."""
    from matplotlib.image import imread

    from instrument_classifier.error_analysis import ErrorPlot

    classes, pitches = ["brass", "organ", "piano"], np.arange(21, 136)
    rng = np.random.default_rng(0)
    # Titles as train.py's clips have them, one with letters that reach low (underscores, g, p) and one without.
    first = (rng.random((44, 115)), pd.Series([0.1, 0.7, 0.2], index=classes), "sample 1: flute (MIDI 76), true pipe")
    second = (rng.random((44, 115)), pd.Series([0.8, 0.15, 0.05], index=classes),
              "sample 2: acoustic_grand_piano (MIDI 60), true piano, predicted brass")

    def drawn(plot, clip, name):
        plot.save(*clip, tmp_path / name)
        return imread(tmp_path / name)

    reused = ErrorPlot(classes, pitches, 44)
    drawn(reused, first, "first.png")
    alone = drawn(ErrorPlot(classes, pitches, 44), second, "alone.png")
    assert np.array_equal(drawn(reused, second, "second.png"), alone)
    assert np.array_equal(drawn(reused, first, "first-again.png"), imread(tmp_path / "first.png"))
    # ... and each part of a clip shows: its chromagram, its probabilities (the bars' lengths, and which class
    # has which), its title.
    same_order, same_lengths = (pd.Series(p, index=classes) for p in ([0.6, 0.3, 0.1], [0.05, 0.15, 0.8]))
    for other in ((first[0], *second[1:]), (second[0], same_order, second[2]), (second[0], same_lengths, second[2]),
                  (*second[:2], first[2])):
        assert not np.array_equal(drawn(ErrorPlot(classes, pitches, 44), other, "other.png"), alone)
    # Only what changes is drawn for a clip, over the rest drawn once: the picture is what a full draw of the
    # figure shows (but for a few antialiased pixels where a frame meets a tick).
    for artist in reused.changing:
        artist.set_animated(False)
    reused.fig.savefig(tmp_path / "full.png", dpi=reused.fig.dpi)
    difference = np.abs(imread(tmp_path / "full.png") - imread(tmp_path / "first-again.png")).max(axis=2)
    assert (difference > 0).sum() < 50 and difference.max() < 0.1, ((difference > 0).sum(), difference.max())


def test_play_without_audio_player_is_one_line_error(model_dir, tmp_path, capsys, monkeypatch):
    """Said before any work (no listening page built for nothing), and so is a player that fails."""
    from instrument_classifier.error_analysis import analyze_errors as listening_page, play_clips

    _, model = copy_with_its_dataset(model_dir, tmp_path / "dataset", tmp_path / "dataset" / "models")
    with monkeypatch.context() as patched:
        patched.setenv("PATH", "/nonexistent")
        assert_one_line_error(*run_script(analyze_errors, [model, "--play"], capsys)[::2], "no audio player")
    assert not (model / "evaluation" / "errors").exists()
    index = listening_page(model, split="all", quiet=True)
    with pytest.raises(UserError, match=r"cannot play audio with false \(exit 1\)"):
        play_clips(index.parent, player=("false", ["false"]))


def test_leaderboard(model_dir, capsys):
    status, out, _ = run_script(leaderboard, [model_dir.parent], capsys)
    assert status == 0 and model_dir.name in out and "rank 1 of 1" in out
    # How far the ranking's measure can be trusted: the best's validation error with its 95 % interval.
    valid = pd.read_csv(model_dir / "final_metrics.csv").set_index("split").loc["valid"]
    assert (f"measured on {int(valid['n'])} clips: its 95 % interval is "
            f"{valid['error_low']:.1%}-{valid['error_high']:.1%}") in out
    status, out, _ = run_script(leaderboard, [model_dir.parent, "--best"], capsys)
    assert status == 0 and out.strip() == str(model_dir)
    from instrument_classifier.leaderboard import best_model_dir

    assert best_model_dir(model_dir.parent.parent) == model_dir  # a dataset folder stands for its models/


def test_leaderboard_ranks_by_validation_error(model_dir, tmp_path):
    from instrument_classifier.leaderboard import best_model_dir, collect_models

    for name, error in (("20990101-000000-x-s1", 0.5), ("20990101-000001-x-s1", 0.1), (".20990101-tmp", 0.0)):
        copy = tmp_path / name
        shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("evaluation"))
        metrics = pd.read_csv(copy / "final_metrics.csv")
        metrics.loc[metrics["split"] == "valid", "error"] = error
        metrics.to_csv(copy / "final_metrics.csv", index=False)
    (tmp_path / "unfinished").mkdir()
    table = collect_models(tmp_path)
    assert list(table["path"].map(lambda p: Path(p).name)) == ["20990101-000001-x-s1", "20990101-000000-x-s1"]
    assert best_model_dir(tmp_path).name == "20990101-000001-x-s1"
    # A better model of another target is not the default model, which predict.py uses to name families.
    other = tmp_path / "20990101-000002-x-s1"
    shutil.copytree(tmp_path / "20990101-000001-x-s1", other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "target": "instrument"}))
    metrics = pd.read_csv(other / "final_metrics.csv")
    metrics.loc[metrics["split"] == "valid", "error"] = 0.0
    metrics.to_csv(other / "final_metrics.csv", index=False)
    assert best_model_dir(tmp_path).name == "20990101-000001-x-s1"
    assert best_model_dir(tmp_path, target=None).name == other.name
    # Nor is a better model that held fonts out (--split soundfont): it never heard them.
    (other / "config.json").write_text(json.dumps({**config, "target": "family", "split": "soundfont"}))
    assert best_model_dir(tmp_path).name == "20990101-000001-x-s1"
    assert best_model_dir(tmp_path, split=None).name == other.name


def test_leaderboard_says_what_it_filters_out_and_what_will_not_load(model_dir, tmp_path, capsys):
    """'run train.py first' of a folder full of models of another target; a junk model.keras ranked first, unsaid."""
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("evaluation"))
    status, _, err = run_script(leaderboard, [tmp_path, "--target", "instrument"], capsys)
    assert_one_line_error(status, err, "no finished models of target instrument", "there is 1 of target family")
    (copy / "model.keras").write_text("junk")
    status, out, err = run_script(leaderboard, [tmp_path], capsys)
    assert status == 0 and copy.name in out and f"model {copy} is ranked but cannot be loaded" in err


# ---------------------------------------------------------------------------
# Bad input: one line, exit status 2, nothing half-written


def test_dataset_without_features(tiny_dataset, tmp_path, capsys):
    copy = tmp_path / "no-features"
    shutil.copytree(tiny_dataset, copy, ignore=shutil.ignore_patterns("features"))
    assert_one_line_error(*run_script(prepare_training, [copy], capsys)[::2], "features")
    assert not (copy / "training-data").exists()
    assert_one_line_error(*run_script(prepare_training, [tmp_path / "missing"], capsys)[::2])


def test_training_a_missing_dataset_says_so(tmp_path, capsys):
    assert_one_line_error(*run_script(train, [tmp_path / "missing", "-q"], capsys)[::2],
                          f"dataset folder not found: {tmp_path / 'missing'}")


def test_training_given_another_stages_folder_says_which(model_dir, dataset, tmp_path, capsys):
    """It advised running prepare_training.py on a prepared folder, or into a dataset's own folder."""
    prepared = dataset / "training-data"
    (tmp_path / "a-file").write_text("x")
    cases = [([prepared], f"{prepared} is prepared training data, not a dataset: give its dataset and "
                          f"--training-data {prepared}"),
             ([dataset / "audio"], "is not a dataset (parameters.csv not found)"),
             ([dataset, "--training-data", dataset], f"{dataset} is not prepared training data"),
             ([dataset, "--training-data", tmp_path / "a-file"], "is a file, not prepared training data"),
             ([dataset, "--training-data", tmp_path / "new"],
              f"run prepare_training.py {dataset} -o {tmp_path / 'new'}")]
    for argv, message in cases:
        assert_one_line_error(*run_script(train, [*argv, "--models-dir", tmp_path / "m", "-q"], capsys)[::2], message)
    assert not (tmp_path / "m").exists()


def test_not_a_model_dir(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for script in (evaluate, analyze_errors):
        assert_one_line_error(*run_script(script, [tmp_path / "empty"], capsys)[::2], "not a model directory")
    assert_one_line_error(*run_script(evaluate, [tmp_path / "missing"], capsys)[::2], "not found")
    assert not (tmp_path / "empty" / "evaluation").exists()
    assert_one_line_error(*run_script(leaderboard, [tmp_path / "empty", "--best"], capsys)[::2], "no finished")


def test_evaluate_checks_every_argument_before_it_writes(model_dir, tmp_path, capsys):
    """A bad later argument once failed only after the first model's evaluation/ had been rewritten."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("evaluation"))
    (tmp_path / "file.txt").write_text("x")
    no_features = tmp_path / "no-features"
    notes = tmp_path / "notes"  # one user's file is as many as a dataset's
    notes.mkdir()
    (notes / "notes.txt").write_text("x")
    shutil.copytree(model_dir.parent.parent, no_features, ignore=shutil.ignore_patterns("features", "models"))
    for argv, message in [([copy, tmp_path / "missing"], "model directory not found"),
                          ([copy, "--dataset", tmp_path], "is not a dataset: parameters.csv not found"),
                          ([copy, "--dataset", no_features], "has no features: run extract_features.py"),
                          ([copy, "--report", tmp_path / "file.txt" / "report"], "file.txt is a file, not a folder"),
                          # A dataset's folder: the report would have been written in among its files.
                          ([copy, "--report", no_features], "holds other files than a generalisation report"),
                          ([copy, "--report", notes], "holds other files than a generalisation report (notes.txt)"),
                          ([copy, "--report", ""], "the report folder is an empty path")]:  # was: no report, 0
        assert_one_line_error(*run_script(evaluate, argv, capsys)[::2], message)
        assert not (copy / "evaluation").exists()


@pytest.mark.parametrize("garbage", [b"not a zip file", b""])
def test_corrupt_model_file(model_dir, tmp_path, capsys, garbage):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken, ignore=shutil.ignore_patterns("evaluation"))
    (broken / "model.keras").write_bytes(garbage)
    for script in (evaluate, analyze_errors):
        assert_one_line_error(*run_script(script, [broken], capsys)[::2], "model.keras")
    assert not (broken / "evaluation").exists()


def test_truncated_model_file(model_dir, tmp_path, capsys):
    broken = tmp_path / "truncated"
    shutil.copytree(model_dir, broken, ignore=shutil.ignore_patterns("evaluation"))
    with zipfile.ZipFile(model_dir / "model.keras") as source, \
            zipfile.ZipFile(broken / "model.keras", "w") as target:
        target.writestr("config.json", source.read("config.json"))  # no weights
    assert_one_line_error(*run_script(evaluate, [broken], capsys)[::2], "model.keras")


def test_unknown_architecture_leaves_nothing(model_dir, dataset, tmp_path, capsys):
    status, _, err = run_script(train, [dataset, "--arch", "transformer", "--models-dir", tmp_path / "m"], capsys)
    assert_one_line_error(status, err, "unknown architecture")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_a_network_too_large_for_memory_is_one_line(model_dir, dataset, tmp_path, capsys):
    """TensorFlow's ResourceExhaustedError is no MemoryError: it printed a 28-line traceback."""
    import keras

    status, _, err = run_script(train, [dataset, "--models-dir", tmp_path / "m", "--epochs", "1", "-q",
                                        "--model-option", "filters=1e6"], capsys)
    reason = {"tensorflow": "(OOM when allocating tensor", "jax": "(INTERNAL: Error dispatching computation: Out of "
              "memory allocating", "torch": "(DefaultCPUAllocator: can't allocate memory"}[keras.backend.backend()]
    assert_one_line_error(status, err, f"out of memory {reason}", "a smaller network")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


@pytest.mark.parametrize("message, shown", [
    ("INTERNAL: Error dispatching computation: Out of memory allocating 12000000000000 bytes.",   # JAX, a CPU
     "INTERNAL: Error dispatching computation: Out of memory allocating 12000000000000 bytes."),
    ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4 bytes.",                      # JAX, a GPU
     "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4 bytes."),
    ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
     "allocate 8 bytes. Error code 12 (Cannot allocate memory)",                                  # torch, Linux
     "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes. Error code 12"),
    ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 8 "
     "bytes.", "DefaultCPUAllocator: not enough memory: you tried"),                              # torch, Windows
])
def test_every_backend_s_out_of_memory_is_one_line(message, shown, capsys):
    """The backends' own words for it, on a CPU and a GPU: JAX's and torch's were tracebacks (RuntimeErrors)."""
    from instrument_classifier.cli import entry_point

    def main():
        raise RuntimeError(message + "\n\nThe C++ traceback:\n  frame 0")

    status = entry_point(main)()
    assert_one_line_error(status, capsys.readouterr().err, f"error: out of memory ({shown}", "a smaller network")


def test_an_error_that_is_not_about_memory_is_not_called_so():
    from instrument_classifier.cli import entry_point

    def main():
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")

    with pytest.raises(RuntimeError, match="requires grad"):
        entry_point(main)()


def test_interrupted_training_leaves_no_model_folder(model_dir, dataset, tmp_path, capsys, monkeypatch):
    import keras

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "fit", interrupt)
    status, _, _ = run_script(train, [dataset, "--epochs", "1", "--models-dir", tmp_path / "m", "-q"], capsys)
    assert status == 130
    assert not (tmp_path / "m").exists()  # not even the models folder it made


@pytest.mark.parametrize("stop", ["Ctrl-C", "a failed report"])
def test_training_stopped_in_its_evaluation_says_where_the_model_is(model_dir, dataset, tmp_path, capsys,
                                                                     monkeypatch, stop):
    """The finished model stayed, ranked by the leaderboard, and its folder was never named."""
    from instrument_classifier import evaluation

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt if stop == "Ctrl-C" else UserError("cannot write the report")

    monkeypatch.setattr(evaluation, "write_report", interrupt)
    status, _, err = run_script(train, [dataset, "--epochs", "1", "--models-dir", tmp_path / "m", "-q"], capsys)
    (saved,) = (tmp_path / "m").iterdir()
    assert (saved / "model.keras").is_file()
    if stop == "Ctrl-C":
        assert status == 130
        assert f"the model is saved in {saved}; its evaluation was stopped: evaluate.py {saved} writes it" in err
    else:
        assert_one_line_error(status, err, f"cannot write the report (the model is saved in {saved}; evaluate.py "
                                           f"{saved} writes its ")


def test_split_that_leaves_a_class_empty(dataset, tmp_path, capsys):
    small = tmp_path / "small"
    shutil.copytree(dataset, small, ignore=shutil.ignore_patterns("models", "training-data"))
    parameters = pd.read_csv(small / "parameters.csv")
    keep = parameters[(parameters["family_name"] != "piano") | (parameters.groupby("family_name").cumcount() < 2)]
    keep.to_csv(small / "parameters.csv", index=False)  # only 2 piano clips: no room for valid and test
    from instrument_classifier.feature_extraction import extract_dataset

    extract_dataset(small, quiet=True, jobs=1, overwrite=True)
    assert_one_line_error(*run_script(prepare_training, [small], capsys)[::2], "piano")
    assert not (small / "training-data").exists()
    # Clips of one family only: a "classifier" would train, score 0 % error and call everything piano.
    parameters[parameters["family_name"] == "piano"].to_csv(small / "parameters.csv", index=False)
    extract_dataset(small, quiet=True, jobs=1, overwrite=True)
    assert_one_line_error(*run_script(prepare_training, [small], capsys)[::2], "is of one family, 'piano'")
    assert not (small / "training-data").exists()
    # Whole instruments held out with an instrument target: every class would miss from training.
    assert_one_line_error(*run_script(prepare_training, [dataset, "--target", "instrument", "--split", "instrument",
                                                         "-o", tmp_path / "td"], capsys)[::2])
    assert not (tmp_path / "td").exists()


def test_prepare_training_follows_its_seed(dataset, tmp_path, capsys):
    for seed in (1, 2):
        assert run_script(prepare_training, [dataset, "--seed", seed, "-o", tmp_path / f"s{seed}"],
                          capsys)[0] == 0
        assert json.loads((tmp_path / f"s{seed}" / "preprocessing.json").read_text())["seed"] == seed
    assert (tmp_path / "s1" / "splits.csv").read_text() != (tmp_path / "s2" / "splits.csv").read_text()


def test_instrument_split_end_to_end(dataset, tmp_path, capsys):
    out = tmp_path / "by-instrument"
    status, _, _ = run_script(prepare_training, [dataset, "--split", "instrument", "-o", out], capsys)
    assert status == 0
    data = load_training_data(dataset, out)
    per_instrument = pd.Series(data.split).groupby(data.parameters["instrument_id"].to_numpy()).nunique()
    assert (per_instrument == 1).all()
    assert (pd.crosstab(data.y, data.split) > 0).all().all()  # every family in every split


def test_a_regenerated_dataset_is_not_taken_for_the_one_trained_on(model_dir, tmp_path, capsys):
    """Splits, scaler and predictions.csv belong to the clips they were made from: a dataset generated
    again under the same path (other clips, same sample ids) was trained on and listened to, silently."""
    from conftest import make_dataset
    from instrument_classifier.feature_extraction import extract_dataset

    dataset, model = copy_with_its_dataset(model_dir, tmp_path / "dataset", tmp_path / "models")
    training_data = tmp_path / "splits"
    shutil.move(dataset / "training-data", training_data)
    assert run_script(analyze_errors, [model, "-q"], capsys)[0] == 0  # the same clips: fine
    # Copied without their times and extracted again (the fingerprint changes): still the same clips.
    for clip in (dataset / "audio").iterdir():
        os.utime(clip)
    before = json.loads((dataset / "features" / "features.json").read_text())["fingerprint"]
    extract_dataset(dataset, quiet=True, jobs=1)
    assert json.loads((dataset / "features" / "features.json").read_text())["fingerprint"] != before
    load_training_data(dataset, training_data)
    assert run_script(analyze_errors, [model, "-q"], capsys)[0] == 0

    shutil.rmtree(dataset)
    extract_dataset(make_dataset(dataset, seed=8), quiet=True, jobs=1)  # other clips, the same 56 ids
    assert_one_line_error(*run_script(train, [dataset, "--training-data", training_data, "--epochs", "1"],
                                      capsys)[::2], "prepared from other features", f"-o {training_data}")
    assert_one_line_error(*run_script(analyze_errors, [model], capsys)[::2], "changed since the model was trained")
    # Its new clips are scored as any other dataset's; the report of the model's own splits stays as it was.
    assert run_script(evaluate, [model, "--dataset", dataset, "-q"], capsys)[0] == 0
    assert len(pd.read_csv(model / "evaluation" / "dataset" / "predictions.csv")) == 56
    assert run_script(evaluate, [model, "-q"], capsys)[0] == 0


def test_two_runs_started_in_the_same_second_get_two_names(tmp_path):
    """The second of two runs of one seed started in the same second finished onto the first's name, and failed."""
    from instrument_classifier.cli import atomic_dir
    from instrument_classifier.training import new_model_id

    first = new_model_id("harmonic", 3, tmp_path)
    with atomic_dir(tmp_path / first):  # the first run, still training
        second = new_model_id("harmonic", 3, tmp_path)
    assert second != first

"""Options a user changes along the pipeline, carried through to prediction.

One small dataset of three instruments (generate_audio_samples.py
--instruments), chromagrams with non-default extractor parameters, a model
that names instruments (prepare_training.py --target instrument, train.py),
and predict.py on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import generate_audio_samples
import predict
import prepare_training
import train
from conftest import run_script
from instrument_classifier.feature_extraction import extract_dataset
from instrument_classifier.feature_store import load_features
from instrument_classifier.features import ChromagramExtractor

INSTRUMENTS = {"violin": "strings", "trumpet": "brass", "flute": "pipe"}
# Not the defaults (-120 dB floor and gate, 440 Hz), and the same (44, 115) shape: a predictor that fell
# back to the default extractor would not fail, it would compute other features.
EXTRACTOR = ChromagramExtractor(floor_db=-90.0, gate_db=-90.0, base_frequency=442.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """30 clips of three instruments (by name and by GM id), with features of EXTRACTOR."""
    out = tmp_path_factory.mktemp("options") / "three-instruments"
    status = generate_audio_samples.main(["-c", "30", "-s", "5", "-o", str(out), "-j", "1", "-q",
                                          "--instruments", "violin", "57", "flute"])  # 57: the trumpet
    assert status == 0
    extract_dataset(out, extractor=EXTRACTOR, quiet=True, jobs=1)
    return out


@pytest.fixture(scope="module")
def instrument_model(dataset, tmp_path_factory) -> Path:
    """A model trained (1 epoch) to name the instrument, on EXTRACTOR's features."""
    import contextlib
    import io

    assert prepare_training.main([str(dataset), "--target", "instrument", "-o", str(dataset / "by-instrument")]) == 0
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert train.main([str(dataset), "--training-data", str(dataset / "by-instrument"), "--epochs", "1", "-q",
                           "--no-evaluate", "--models-dir", str(dataset / "models")]) == 0
    return Path(out.getvalue().strip().splitlines()[-1])


def test_generator_draws_only_the_chosen_instruments(dataset):
    parameters = pd.read_csv(dataset / "parameters.csv")
    assert len(parameters) == 30
    assert dict(zip(parameters["instrument_name"], parameters["family_name"])) == INSTRUMENTS
    assert set(parameters["midi_program"]) == {40, 56, 73}
    assert parameters["instrument_name"].value_counts().min() >= 5  # each drawn often enough to be split


def test_features_keep_the_extractor_parameters(dataset):
    chromagrams, _, params = load_features(dataset)
    assert ChromagramExtractor.from_params(params) == EXTRACTOR
    assert chromagrams.shape == (30, 44, 115)


def test_an_instrument_model_names_instruments(instrument_model, dataset, tmp_path, capsys):
    preprocessing = json.loads((instrument_model / "preprocessing.json").read_text())
    assert sorted(preprocessing["class_names"]) == sorted(INSTRUMENTS)
    config = json.loads((instrument_model / "config.json").read_text())
    assert config["target"] == "instrument" and config["fine_labels"] is False
    clips = [str(dataset / name) for name in pd.read_csv(dataset / "parameters.csv")["audio_file"][:3]]
    status, out, err = run_script(predict, ["-m", instrument_model, *clips], capsys)
    assert status == 0 and err == ""
    stored = pd.read_csv(instrument_model / "predictions.csv").head(3)
    assert [line.split("\t") for line in out.splitlines()] == [[c, p] for c, p in zip(clips, stored["predicted"])]
    assert set(stored["predicted"]) <= set(INSTRUMENTS)


def test_non_default_extractor_parameters_travel_to_prediction(instrument_model, dataset):
    """The model folder carries the extractor it was trained on; prediction rebuilds exactly that one."""
    from instrument_classifier.audio import read_audio
    from instrument_classifier.prediction import Predictor

    preprocessing = json.loads((instrument_model / "preprocessing.json").read_text())
    assert preprocessing["features"] == EXTRACTOR.get_params()
    predictor = Predictor(instrument_model)
    stored = pd.read_csv(instrument_model / "predictions.csv").head(5)
    for row in stored.itertuples():
        samples, rate = read_audio(dataset / row.audio_file)
        result = predictor.predict(samples, rate)
        np.testing.assert_allclose(list(result.probabilities.values()),
                                   [getattr(row, f"p_{name}") for name in predictor.class_names], atol=1e-4)
        # The features the model saw in training, not those of the default extractor.
        np.testing.assert_allclose(result.chromagram, EXTRACTOR.transform_one(samples[:88_200, 0]), atol=1e-6)
        assert np.abs(result.chromagram - ChromagramExtractor().transform_one(samples[:88_200, 0])).max() > 0.05

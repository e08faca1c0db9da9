"""The model code is backend-neutral (README, *Determinism*): on JAX, Keras's second backend, the default network
trains, one seed gives one result, and a model folder trained on one backend predicts the same on the other.

JAX lives beside the environment, in ``.venv/jax-backend`` (`make test` installs it; the Makefile says why), and
only the subprocesses here use it; this process runs on TensorFlow.  A plain ``pytest`` in an environment that
`make setup` made fails here until `make test` (or `make .venv/jax-backend/.installed`) has installed it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import predict
from conftest import run_script
from instrument_classifier.defaults import JAX_BACKEND_DIR

pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                                reason="compares JAX with TensorFlow, which this process must run on")

ROOT = Path(__file__).resolve().parents[1]


def run_on_jax(*argv, timeout=600) -> str:
    """Run a stage script with ``KERAS_BACKEND=jax``; its stdout (the test fails on a non-zero exit)."""
    assert (JAX_BACKEND_DIR / "jax").is_dir(), f"no JAX in {JAX_BACKEND_DIR}: run the tests with `make test`"
    path = os.pathsep.join(filter(None, [str(JAX_BACKEND_DIR), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": path})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def dataset(tiny_dataset, tmp_path_factory) -> Path:
    """A copy of the tiny dataset with features and a random split."""
    from instrument_classifier.feature_extraction import extract_dataset
    from instrument_classifier.training_data import prepare_training_data

    copy = tmp_path_factory.mktemp("backends") / "dataset"
    shutil.copytree(tiny_dataset, copy)
    extract_dataset(copy, quiet=True, jobs=1)
    prepare_training_data(copy)
    return copy


@pytest.fixture(scope="module")
def jax_models(dataset, tmp_path_factory) -> list[Path]:
    """Two model folders trained by train.py on JAX, with one seed."""
    folders = []
    for run in ("first", "second"):
        out = run_on_jax("train.py", dataset, "--epochs", "2", "--seed", "3", "-q", "--no-evaluate",
                         "--models-dir", tmp_path_factory.mktemp(run))
        folders.append(Path(out.strip().splitlines()[-1]))
    return folders


def test_the_default_network_trains_on_jax_and_one_seed_gives_one_result(jax_models):
    from instrument_classifier.architectures import DEFAULT_ARCHITECTURE

    config = json.loads((jax_models[0] / "config.json").read_text())
    assert config["backend"] == "jax" and config["arch"] == DEFAULT_ARCHITECTURE
    assert (JAX_BACKEND_DIR / f"jax-{config['versions']['jax']}.dist-info").is_dir()  # the backend's version recorded
    first, second = (pd.read_csv(folder / "learning_curves.csv").drop(columns="seconds") for folder in jax_models)
    assert len(first) == 2 and np.isfinite(first["loss"]).all()
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(*(pd.read_csv(folder / "predictions.csv") for folder in jax_models))


def test_a_model_trained_on_jax_predicts_the_same_on_tensorflow(jax_models, dataset):
    """The model folder's .keras file and custom layers load on the other backend, with the same weights."""
    import keras

    from instrument_classifier.feature_store import load_features
    from instrument_classifier.model_bundle import load_model_dir

    assert keras.backend.backend() == "tensorflow"
    bundle = load_model_dir(jax_models[0])
    stored = pd.read_csv(jax_models[0] / "predictions.csv")  # the JAX process's own predictions
    chromagrams, _, _ = load_features(dataset)
    assert len(stored) == len(chromagrams)
    np.testing.assert_allclose(bundle.predict_proba(chromagrams), stored[[f"p_{c}" for c in bundle.class_names]],
                               atol=1e-5)


def test_a_model_trained_on_tensorflow_predicts_the_same_on_jax(tiny_model_dir, capsys):
    """predict.py on JAX (the web app's path too) gives a TensorFlow-trained model's probabilities."""
    files = sorted((tiny_model_dir.parent.parent / "audio").glob("*.flac"))[:6]
    status, out, _ = run_script(predict, ["-m", tiny_model_dir, "--csv", *files], capsys)
    assert status == 0
    on_tensorflow = pd.read_csv(io.StringIO(out))
    on_jax = pd.read_csv(io.StringIO(run_on_jax("predict.py", "-m", tiny_model_dir, "--csv", *files)))
    probabilities = [c for c in on_tensorflow.columns if c.startswith("p_")]
    assert len(probabilities) == 7 and list(on_jax.columns) == list(on_tensorflow.columns)
    np.testing.assert_allclose(on_jax[probabilities], on_tensorflow[probabilities], atol=1e-5)
    assert list(on_jax["label"]) == list(on_tensorflow["label"])

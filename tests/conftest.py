"""Shared fixtures: a tiny generated dataset and a tiny trained model, built once per test session."""

from __future__ import annotations

import http.client
import shutil
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from instrument_classifier.generation import SHARD_SIZE, GenerationSettings, generate_dataset
from instrument_classifier.instruments import load_instruments, select_instruments
from instrument_classifier.soundfonts import resolve_soundfonts
from instrument_classifier.variation import get_recipe

# Enough clips for every default family to appear several times.
TINY_COUNT = 56
TINY_SEED = 7


def make_dataset(path, *, count=TINY_COUNT, seed=TINY_SEED, jobs=1, audio_format="flac", soundfonts=None,
                 families=None, variation="none", vary=None, scheduler=None, shard_size=SHARD_SIZE):
    """Generate a small real dataset (FluidSynth, by default the default SoundFont, clean clips) into ``path``."""
    settings = GenerationSettings(
        count=count, seed=seed, audio_format=audio_format, soundfonts=resolve_soundfonts(soundfonts),
        instruments=select_instruments(load_instruments(), families=families), recipe=get_recipe(variation, vary),
        shard_size=shard_size)
    generate_dataset(settings, path, jobs=None if scheduler else jobs, scheduler=scheduler, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A generated dataset folder of 56 clips of the default families (read-only: copy to modify)."""
    return make_dataset(tmp_path_factory.mktemp("tiny") / "dataset")


# ---------------------------------------------------------------------------
# A tiny trained model and the web app serving it


def train_tiny_model(base: Path, dataset: Path, *, epochs: int = 2) -> Path:
    """Copy ``dataset`` to ``base/dataset``, extract, prepare and train a model on it; return the model folder."""
    from instrument_classifier.feature_extraction import extract_dataset
    from instrument_classifier.training import train_model
    from instrument_classifier.training_data import prepare_training_data

    copy = base / "dataset"
    shutil.copytree(dataset, copy)
    extract_dataset(copy, quiet=True, jobs=1)
    prepare_training_data(copy)
    return train_model(copy, epochs=epochs, verbose=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dataset, tmp_path_factory) -> Path:
    """A model trained for 2 epochs on a copy of the tiny dataset (read-only: copy it before changing it).

    Its dataset, with features, is ``tiny_model_dir.parent.parent``.
    """
    return train_tiny_model(tmp_path_factory.mktemp("prediction-model"), tiny_dataset)


@pytest.fixture(scope="session")
def predictor(tiny_model_dir):
    """The tiny model loaded once, as predict.py and the web app load it."""
    from instrument_classifier.prediction import Predictor

    return Predictor(tiny_model_dir)


@pytest.fixture(scope="module")
def server(predictor):
    """Base URL of the web app served by waitress on a free loopback port (a server per test module)."""
    from instrument_classifier.webapp import create_app, make_server

    wsgi_server = make_server(create_app(predictor), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=wsgi_server.run, name="waitress", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{wsgi_server.effective_port}"
    wsgi_server.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture(scope="session")
def clips(tiny_model_dir):
    """A few dataset clips as (name, FLAC bytes)."""
    paths = sorted((tiny_model_dir.parent.parent / "audio").glob("*.flac"))[:4]
    return [(path.name, path.read_bytes()) for path in paths]


def request(base, method, path, body=b"", headers=None, timeout=120):
    """(status, headers, body bytes) of one request on a fresh connection."""
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post_form(base, path="/api/classify/instrument", *, fields=None, files=None, filename_encoding="utf-8",
              timeout=120):
    """POST multipart/form-data; fields: {name: value} or [(name, value)]; files: {field: (filename, bytes, type)}."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in dict(fields or {}).items() if isinstance(fields, dict) else fields or []:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, content_type) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="'.encode()
                     + filename.encode(filename_encoding)
                     + f'"\r\nContent-Type: {content_type}\r\n\r\n'.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return request(base, "POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                   timeout=timeout)


# ---------------------------------------------------------------------------
# Running a stage script's main


def run_script(module, argv, capsys) -> tuple[int, str, str]:
    """Run a stage script's main in-process; return (status, stdout, stderr)."""
    status = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0]

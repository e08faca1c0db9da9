"""The web app against a real waitress server on a loopback port, and one real browser.

The server runs in a thread of the test process on a free port and is shut
down by the fixture.  Requests use only the standard library.
"""

from __future__ import annotations

import http.client
import io
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from instrument_classifier.prediction import Predictor
from instrument_classifier.webapp import MAX_UPLOAD_BYTES, create_app, make_server
from test_prediction import train_tiny_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def predictor(tiny_dataset, tmp_path_factory):
    return Predictor(train_tiny_model(tmp_path_factory.getbasetemp() / "prediction-model", tiny_dataset))


@pytest.fixture(scope="module")
def server(predictor):
    """Base URL of the app served by waitress on a free loopback port."""
    wsgi_server = make_server(create_app(predictor), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=wsgi_server.run, name="waitress", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{wsgi_server.effective_port}"
    wsgi_server.close()
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def clips(predictor):
    """A few dataset clips as (name, FLAC bytes)."""
    paths = sorted((Path(predictor.model_dir).parent.parent / "audio").glob("*.flac"))[:4]
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


def post_form(base, path="/api/classify/instrument", *, fields=None, files=None):
    """POST multipart/form-data; files: {field: (filename, bytes, content type)}."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, content_type) in (files or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f'Content-Type: {content_type}\r\n\r\n'.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return request(base, "POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def classify(base, filename, data, content_type="audio/flac"):
    status, headers, body = post_form(base, files={"audio_file": (filename, data, content_type)})
    assert headers["Content-Type"].startswith("application/json")
    return status, json.loads(body)


# ---------------------------------------------------------------------------
# API


def test_classify(server, predictor, clips):
    name, data = clips[0]
    status, body = classify(server, name, data)
    assert status == 200
    assert list(body)[:4] == ["label", "probabilities", "model_id", "warnings"]
    assert body["label"] in predictor.class_names and body["model_id"] == predictor.model_id
    assert list(body["probabilities"]) == predictor.class_names
    assert "chromagram_png" not in body
    status, body = post_form(server, "/api/classify/instrument?chromagram=1",
                             files={"audio_file": (name, data, "audio/flac")})[::2]
    assert json.loads(body)["chromagram_png"].startswith("data:image/png;base64,")


def test_model_description(server, predictor):
    status, _, body = request(server, "GET", "/api/model")
    info = json.loads(body)
    assert status == 200
    assert info["classes"] == predictor.class_names and info["model_id"] == predictor.model_id
    assert set(info["metrics"]) == {"train", "valid", "test"} and "accuracy" in info["metrics"]["test"]
    assert info["created"] and "model_dir" not in info


def wav_bytes(samples, rate=44_100, subtype="PCM_16", format="WAV"):
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, subtype=subtype, format=format)
    return buffer.getvalue()


def test_bad_uploads_get_4xx_json(server, clips):
    flac = clips[0][1]
    cases = {
        "no file field": (post_form(server, fields={"something": "else"}), 400),
        "wrong field name": (post_form(server, files={"file": ("a.flac", flac, "audio/flac")}), 400),
        "not multipart": (request(server, "POST", "/api/classify/instrument", b"RIFF....",
                                  {"Content-Type": "audio/wav"}), 400),
        "no file selected": (post_form(server, files={"audio_file": ("", b"", "application/octet-stream")}), 400),
        "empty file": (post_form(server, files={"audio_file": ("empty.wav", b"", "audio/wav")}), 400),
        "text file": (post_form(server, files={"audio_file": ("notes.txt", b"hello", "text/plain")}), 415),
        "unsupported type": (post_form(server, files={"audio_file": ("song.m4a", b"\0\0\0 ftypM4A ", "audio/mp4")}),
                             415),
        "not audio": (post_form(server, files={"audio_file": ("fake.wav", b"<html>hi</html>", "audio/wav")}), 422),
        "corrupt": (post_form(server, files={"audio_file": ("cut.flac", flac[:300], "audio/flac")}), 422),
        "over 10 MB": (post_form(server, files={"audio_file": ("big.wav", b"\0" * (MAX_UPLOAD_BYTES + 1024),
                                                               "audio/wav")}), 413),
        "GET on the API": (request(server, "GET", "/api/classify/instrument"), 405),
        "unknown path": (request(server, "GET", "/api/nothing"), 404),
    }
    for case, ((status, headers, body), expected) in cases.items():
        assert status == expected, (case, body[:200])
        error = json.loads(body)
        assert error["status"] == expected and error["error"] and "\n" not in error["error"], case


def test_silent_clip_is_a_warning(server):
    status, body = classify(server, "silence.wav", wav_bytes(np.zeros(44_100, np.float32)), "audio/wav")
    assert status == 200 and any("silent" in w for w in body["warnings"])


def test_uploads_never_touch_the_disk(server, monkeypatch):
    """A 5 MB upload goes through waitress and werkzeug without a temporary file."""
    import tempfile

    import werkzeug.formparser

    opened = []

    def refuse(*args, **kwargs):
        opened.append(args)
        raise AssertionError("temporary file opened")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", refuse)
    rng = np.random.default_rng(1)
    data = wav_bytes(rng.normal(0, 0.01, (30 * 44_100, 2)).astype(np.float32), subtype="PCM_16")
    assert len(data) > 5_000_000
    status, _ = classify(server, "long.wav", data, "audio/wav")
    assert status == 200 and opened == []


def test_eight_concurrent_clients(server, clips):
    """8 clients, 20 requests each: no request fails, every answer is the clip's label."""
    expected = {name: classify(server, name, data)[1]["label"] for name, data in clips}

    def client(index):
        failures = []
        for i in range(20):
            name, data = clips[(index + i) % len(clips)]
            status, body = classify(server, name, data)
            if status != 200 or body["label"] != expected[name]:
                failures.append((name, status, body))
        return failures

    with ThreadPoolExecutor(max_workers=8) as pool:
        failures = [f for result in pool.map(client, range(8)) for f in result]
    assert failures == []


# ---------------------------------------------------------------------------
# The page


def test_page_without_javascript(server, predictor, clips):
    status, headers, body = request(server, "GET", "/")
    page = body.decode()
    assert status == 200 and 'enctype="multipart/form-data"' in page and 'name="audio_file"' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "https://" not in page and "http://" not in page  # no CDN: every asset is the app's
    for asset in ("/static/style.css", "/static/app.js"):
        assert request(server, "GET", asset)[0] == 200

    # The plain form post renders the result: label, a bar per class, chromagram, player.
    name, data = clips[0]
    status, _, body = post_form(server, "/", files={"audio_file": (name, data, "audio/flac")})
    page = body.decode()
    assert status == 200
    assert page.count('<div class="bar') == len(predictor.class_names)
    assert 'src="data:image/png;base64,' in page and 'src="data:audio/flac;base64,' in page
    label = predictor.predict_file(io.BytesIO(data), name=name).label
    assert f'id="label">{label}</strong>' in page

    # An example button, and a bad upload (the page with the message and the status).
    example = page.split('name="example" value="')[1].split('"')[0]
    status, _, body = post_form(server, "/", fields={"example": example})
    assert status == 200 and f'src="/examples/{example}"' in body.decode()
    assert request(server, "GET", f"/examples/{example}")[0] == 200
    status, _, body = post_form(server, "/", files={"audio_file": ("notes.txt", b"hello", "text/plain")})
    assert status == 415 and "unsupported file type" in body.decode()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (make apt-packages)")
def test_browser_upload_shows_family_and_bars(server, predictor, clips, tmp_path):
    from playwright.sync_api import sync_playwright

    name, data = clips[1]
    (tmp_path / name).write_bytes(data)
    expected = predictor.predict_file(tmp_path / name).label
    foreign, problems = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("request", lambda r: foreign.append(r.url)
                    if not r.url.startswith((server, "data:", "blob:")) else None)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server + "/")
            assert page.is_hidden("#result")
            page.set_input_files("#audio_file", str(tmp_path / name))
            page.wait_for_selector("#result", state="visible", timeout=60_000)
            assert page.text_content("#label") == expected
            widths = page.eval_on_selector_all("#bars .bar-fill", "els => els.map(e => parseFloat(e.style.width))")
            assert len(widths) == len(predictor.class_names) and abs(sum(widths) - 100) < 1
            assert page.get_attribute("#chromagram", "src").startswith("data:image/png;base64,")
            assert page.get_attribute("#player", "src").startswith("blob:")

            # With JavaScript off the form posts and the server renders the same answer.
            context = browser.new_context(java_script_enabled=False)
            plain = context.new_page()
            plain.goto(server + "/")
            plain.set_input_files("#audio_file", str(tmp_path / name))
            plain.click("#classify-button")
            plain.wait_for_selector("#result", state="visible", timeout=60_000)
            assert plain.text_content("#label") == expected
            context.close()
        finally:
            browser.close()
    assert foreign == [] and problems == []


def test_script_argument_errors(tmp_path, capsys):
    import predict_webapp

    assert predict_webapp.main(["--port", "70000"]) == 2
    assert predict_webapp.main(["-m", str(tmp_path / "nope"), "--port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--port" in err[0] and "model directory not found" in err[1]

"""The web app against a real waitress server on a loopback port, and one real browser.

The server runs in a thread of the test process on a free port and is shut
down by the fixture (conftest.py: server, predictor, clips).  Requests use only
the standard library.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import math
import os
import re
import socket
import sys
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import post_form, request
from instrument_classifier.audio import read_mono
from instrument_classifier.webapp import MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES, MAX_UPLOAD_SAMPLES, MAX_UPLOAD_SECONDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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
    expected = predictor.predict_file(io.BytesIO(data), name=name)  # what predict.py says of the same file
    assert body["label"] == expected.label and body["model_id"] == predictor.model_id
    assert list(body["probabilities"]) == predictor.class_names
    assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    assert "chromagram_png" not in body
    status, body = post_form(server, "/api/classify/instrument?chromagram=1",
                             files={"audio_file": (name, data, "audio/flac")})[::2]
    assert json.loads(body)["chromagram_png"].startswith("data:image/png;base64,")
    status, body = post_form(server, "/api/classify/instrument?chromagram=0",
                             files={"audio_file": (name, data, "audio/flac")})[::2]
    assert status == 200 and "chromagram_png" not in json.loads(body)
    headers = post_form(server, files={"audio_file": (name, data, "audio/flac")})[1]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"


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
    assert "big.wav: file too large (over 10 MB)" in json.loads(cases["over 10 MB"][0][2])["error"]


def test_each_413_says_what_was_too_large(server, clips):
    """A long text field or many parts is not "a file over 10 MB"; a body over the limit is JSON too."""
    name, flac = clips[0]
    cases = {
        "a 2 MB text field": (post_form(server, fields={"example": "a" * 2_000_000}), "text field over 256 kB"),
        "1,200 form parts": (post_form(server, fields=[(f"f{i}", "x") for i in range(1200)],
                                       files={"audio_file": (name, flac, "audio/flac")}), "more than 16 parts"),
        "a 17 MB request": (send_headers_only(server, 17_000_000), "request too large: 16.2 MB, over the 10 MB"),
    }
    for case, ((status, headers, body), message) in cases.items():
        assert status == 413, (case, body[:200])
        assert headers["Content-Type"] == "application/json", case
        assert message in json.loads(body)["error"], (case, body)
    status, _, body = post_form(server, "/", fields={"example": "a" * 2_000_000})  # the page, with the message
    assert status == 413 and "text field over 256 kB" in body.decode()
    # The form post of a body the server refuses before the app sees it: a page too (it was raw JSON).
    status, headers, body = send_headers_only(server, 17_000_000, path="/")
    assert status == 413 and headers["Content-Type"].startswith("text/html")
    assert "request too large: 16.2 MB" in body.decode() and 'href="/"' in body.decode()


def test_latin1_file_name_is_a_clear_400(server, clips):
    name, flac = clips[0]
    status, _, body = post_form(server, files={"audio_file": ("café.flac", flac, "audio/flac")},
                                filename_encoding="latin-1")
    assert status == 400 and "not UTF-8" in json.loads(body)["error"]


def test_a_non_ascii_file_name_is_classified(server, predictor, clips):
    name, flac = clips[0]
    for upload_name in ("café.flac", "ノート.flac", "скрипка 🎻.flac"):
        status, _, body = post_form(server, files={"audio_file": (upload_name, flac, "audio/flac")})
        assert status == 200, body
        assert json.loads(body)["label"] == predictor.predict_file(io.BytesIO(flac), name=name).label
    status, _, page = post_form(server, "/", files={"audio_file": ("café.flac", flac, "audio/flac")})
    assert status == 200 and "café.flac" in page.decode()


def send_headers_only(base, content_length, *, expect_continue=True, path="/api/classify/instrument"):
    """(status, headers, body) of a POST whose headers announce ``content_length`` bytes that are never sent.

    With ``Expect: 100-continue`` a client waits for the server's go-ahead before sending a body (curl
    does so past 1 MB); a server that refuses the request must answer at once, without reading a byte.
    """
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\n"
                     f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {content_length}\r\n"
                     + ("Expect: 100-continue\r\n" if expect_continue else "") + "\r\n").encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def test_silent_clip_is_a_warning(server):
    status, body = classify(server, "silence.wav", wav_bytes(np.zeros(44_100, np.float32)), "audio/wav")
    assert status == 200 and any("silent" in w for w in body["warnings"])


@pytest.mark.parametrize("peak, channels, subtype", [(1e37, 1, "FLOAT"), (3e38, 1, "FLOAT"), (3e38, 2, "FLOAT"),
                                                     (1e300, 1, "DOUBLE")])
def test_finite_but_huge_samples_are_classified(server, predictor, clips, peak, channels, subtype):
    """A dataset clip at 48 kHz scaled to a peak of 1e37 (float WAV): a label and a level warning, never a 500."""
    samples = sf.read(io.BytesIO(clips[0][1]))[0]
    at_48k = soxr.resample(samples, 44_100, 48_000)
    huge = at_48k / np.abs(at_48k).max() * peak
    data = wav_bytes(np.stack([huge] * channels, axis=1), rate=48_000, subtype=subtype)
    status, body = classify(server, "huge.wav", data, "audio/wav")
    assert status == 200, body
    # The same clip at its own level gets the same answer (the default network hears no level).
    normal = classify(server, "normal.wav", wav_bytes(at_48k, rate=48_000, subtype="FLOAT"), "audio/wav")[1]
    assert body["label"] == normal["label"]
    assert body["peak_dbfs"] == pytest.approx(20 * math.log10(peak), abs=0.1)
    high = predictor.level_range_dbfs[1]
    assert any(f"scaled to {high:.0f} dBFS" in w for w in body["warnings"]), body["warnings"]
    status, _, page = post_form(server, "/", files={"audio_file": ("huge.wav", data, "audio/wav")})
    assert status == 200 and f'id="label">{body["label"]}</strong>' in page.decode()


@pytest.fixture(scope="module")
def silent_8ch_flac():
    """The issue's probe: 343 kB of FLAC holding 60 s of 8-channel digital silence at 655,350 Hz (315 M samples)."""
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 655_350, 8, format="FLAC", subtype="PCM_16") as audio:
        block = np.zeros((655_350, 8), np.int16)
        for _ in range(60):
            audio.write(block)
    return buffer.getvalue()


def test_a_small_upload_cannot_hold_much_work(server, silent_8ch_flac):
    """What an upload costs is bounded by the samples x channels decoded, not by its length or size.

    Read whole, this file took 13 s and 1.5 GB; at most MAX_UPLOAD_SAMPLES are decoded (the first 1.1 s).
    """
    audio = read_mono(silent_8ch_flac, name="silence.flac", max_seconds=MAX_UPLOAD_SECONDS,
                      max_samples=MAX_UPLOAD_SAMPLES)
    assert audio.channels == 8 and audio.file_seconds == pytest.approx(60) and audio.truncated
    assert 0 < len(audio.samples) * audio.channels <= MAX_UPLOAD_SAMPLES
    tracemalloc.start()
    try:
        status, body = classify(server, "silence.flac", silent_8ch_flac)
        peak = tracemalloc.get_traced_memory()[1]  # numpy arrays included, from every thread
    finally:
        tracemalloc.stop()
    assert status == 200
    assert body["warnings"] == ["silent clip: no note in the first 1.1 s of 60.0 s (a file is read only that far), "
                                "the label means nothing"]
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MiB"


# Every file the process opens for writing while recording, from any thread (see record_file_writes).
_file_writes: list | None = None


def _audit_file_opens(event, args):
    if event == "open" and _file_writes is not None:
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else \
            bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes:
            _file_writes.append((path, mode, flags))


@contextlib.contextmanager
def record_file_writes():
    """Yield a list of the files opened for writing meanwhile (a temporary file too, named or not).

    Python's audit hook sees every open() and os.open() of the process, so
    also waitress's and werkzeug's buffers in the server's threads.
    """
    global _file_writes
    if not getattr(record_file_writes, "installed", False):
        sys.addaudithook(_audit_file_opens)  # cannot be removed: it records only while _file_writes is a list
        record_file_writes.installed = True
    _file_writes = []
    try:
        yield _file_writes
    finally:
        _file_writes = None


def send_chunked(base, size, path="/api/classify/instrument"):
    """(status, headers, body) of a chunked POST of ``size`` zero bytes, one chunk, sent until the server answers."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nTransfer-Encoding: chunked\r\n"
                      f"Content-Type: multipart/form-data; boundary=x\r\n\r\n{size:x}\r\n").encode())
        sock.sendall(b"\0" * size)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def test_uploads_never_touch_the_disk(server):
    """Uploads stay in memory, replies do not carry them, and an oversized body is refused before it is read."""
    rng = np.random.default_rng(1)
    data = wav_bytes(rng.normal(0, 0.01, (30 * 44_100, 2)).astype(np.float32), subtype="PCM_16")
    assert len(data) > 5_000_000
    with record_file_writes() as writes:
        status, body = classify(server, "long.wav", data, "audio/wav")
        assert status == 200 and body["label"]
        status, _, page = post_form(server, "/", files={"audio_file": ("long.wav", data, "audio/wav")})
        assert status == 200 and 'id="label">' in page.decode()
        assert b"data:audio" not in page and len(page) < 100_000  # the result page does not carry the upload
        # Refused from its Content-Length: curl sends "Expect: 100-continue" for such a body, and the
        # server must answer 413 at once instead of reading 17 MB into a temporary file first.
        status, headers, body = send_headers_only(server, 17_000_000)
        assert status == 413 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"error": "request too large: 16.2 MB, over the 10 MB upload limit", "status": 413}
        # A chunked body has no length: it is refused where it passes the limit.
        status, _, body = send_chunked(server, MAX_REQUEST_BYTES + 1)
        assert status == 413 and "request too large" in json.loads(body)["error"]
    assert writes == []


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


def test_idle_and_slow_clients_do_not_lock_others_out(server, predictor, clips):
    """200 connections that send nothing and 100 that trickle a body: a normal client is still served, and
    the server closes them once idle for its timeout."""
    url = urlsplit(server)
    held = []
    try:
        for _ in range(200):
            held.append(socket.create_connection((url.hostname, url.port), timeout=10))
        for _ in range(100):
            sock = socket.create_connection((url.hostname, url.port), timeout=10)
            sock.sendall(b"POST /api/classify/instrument HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                         b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n")
            held.append(sock)
        # Served at once (~10 ms); the generous timeout only keeps a loaded machine from failing it.
        assert request(server, "GET", "/api/model", timeout=10)[0] == 200
        name, data = clips[0]
        status, _, body = post_form(server, files={"audio_file": (name, data, "audio/flac")}, timeout=10)
        assert status == 200 and json.loads(body)["label"] == predictor.predict_file(io.BytesIO(data), name=name).label
        # And the server lets them go within a minute: a silent connection, and one whose body stopped (~35 s).
        for sock in (held[0], held[-1]):
            sock.settimeout(60)
            assert sock.recv(1 << 16) == b""
    finally:
        for sock in held:
            sock.close()


# ---------------------------------------------------------------------------
# The page


def test_page_without_javascript(server, predictor, clips):
    status, headers, body = request(server, "GET", "/")
    page = body.decode()
    assert status == 200 and 'enctype="multipart/form-data"' in page and 'name="audio_file"' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    # A browser must not guess another type for an answer, nor send the page's address on.
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    # The model's test accuracy, said of what it measures: new notes of its own sound banks, not a user's recording.
    assert re.search(r"Right on [\d.]+ % of new notes of the sound banks it was trained on;\s+a recording or a "
                     r"sound bank it never heard gets far more wrong", page)
    assert re.search(r"answers of 80 % or\s+more were right about 9 times in 10", page)  # how to read a probability
    assert "https://" not in page and "http://" not in page  # no CDN: every asset is the app's
    for asset in ("/static/style.css", "/static/app.js"):
        assert request(server, "GET", asset)[0] == 200

    # The plain form post renders the result: label, a bar per class, chromagram, player.
    name, data = clips[0]
    status, _, body = post_form(server, "/", files={"audio_file": (name, data, "audio/flac")})
    page = body.decode()
    assert status == 200
    assert page.count('<div class="bar') == len(predictor.class_names)
    assert 'src="data:image/png;base64,' in page and "data:audio" not in page  # no copy of the upload
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

            # A file over the limit is refused in the page: the server would close the connection on it.
            (tmp_path / "big.wav").write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1))
            page.set_input_files("#audio_file", str(tmp_path / "big.wav"))
            page.wait_for_selector("#error", state="visible", timeout=10_000)
            assert page.text_content("#error") == "big.wav: file too large (over 10 MB)"

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
    assert predict_webapp.main(["--threads", "100000"]) == 2  # was a traceback: can't start new thread
    assert predict_webapp.main(["-m", str(tmp_path / "nope"), "--port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--port" in err[0] and "--threads must be in 1..256" in err[1]
    assert "model directory not found" in err[2]


def test_an_example_clip_gone_since_start_up_is_a_404(predictor, clips, tmp_path):
    from instrument_classifier.webapp import Example, create_app

    path = tmp_path / "example.flac"
    path.write_bytes(clips[0][1])
    client = create_app(predictor, examples=[Example("7", predictor.class_names[0], "an example", path)]).test_client()
    assert client.get("/examples/7").status_code == 200
    path.unlink()  # the dataset regenerated or removed while the server runs
    for response in (client.get("/examples/7"), client.post("/", data={"example": "7"})):
        assert response.status_code == 404
        assert b"no longer on the server" in response.data


def test_examples_of_an_instrument_model_come_from_parameters_csv(tiny_model_dir, tmp_path):
    """Without predictions.csv the examples were looked up by family: an instrument model had none."""
    import shutil

    import pandas as pd

    from instrument_classifier.prediction import Predictor
    from instrument_classifier.training_data import target_labels
    from instrument_classifier.webapp import find_examples

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("evaluation")))
    (model / "predictions.csv").unlink()
    parameters = pd.read_csv(tiny_model_dir.parent.parent / "parameters.csv")
    preprocessing = json.loads((model / "preprocessing.json").read_text())
    names = sorted(set(target_labels(parameters, "instrument")))[:len(preprocessing["class_names"])]
    (model / "preprocessing.json").write_text(json.dumps({**preprocessing, "target": "instrument",
                                                          "class_names": names}))
    examples = find_examples(Predictor(model))
    assert [example.label for example in examples] == names[:len(examples)] and len(examples) == len(names)
    for example in examples:
        row = parameters[parameters["audio_file"] == example.path.relative_to(tiny_model_dir.parent.parent).as_posix()]
        assert target_labels(row, "instrument").iloc[0] == example.label


def test_the_chromagram_picture_has_time_across_and_pitch_up(tmp_path):
    """The page's picture: the first frame at the left, the lowest pitch at the bottom, one pixel a cell."""
    from matplotlib.image import imread

    from instrument_classifier.webapp import chromagram_png

    chromagram = np.zeros((44, 115), np.float32)
    chromagram[0, 0] = 1.0  # the first frame's lowest bin
    (tmp_path / "c.png").write_bytes(chromagram_png(chromagram))
    image = imread(tmp_path / "c.png")
    assert image.shape[:2] == (115, 44)
    brightness = image[..., :3].sum(axis=2)
    assert np.unravel_index(brightness.argmax(), brightness.shape) == (114, 0)
    assert (brightness == brightness[0, 0]).sum() == brightness.size - 1  # every other cell as dark as silence


def test_examples_are_correct_test_clips_unless_the_dataset_was_generated_again(tiny_model_dir, tmp_path):
    """A class's example is a test clip the model got right, where there is one; a dataset generated again since
    training holds other clips under the same ids, so its examples come from its parameters.csv."""
    import shutil

    import pandas as pd

    from instrument_classifier.model_files import own_dataset_changed
    from instrument_classifier.prediction import Predictor
    from instrument_classifier.webapp import find_examples

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("evaluation")))
    predictions = pd.read_csv(model / "predictions.csv")
    label = json.loads((model / "preprocessing.json").read_text())["class_names"][0]
    ids = sorted(predictions.loc[predictions["true"] == label, "sample_id"])
    assert len(ids) >= 3
    of_label = predictions["true"] == label
    predictions.loc[of_label, ["split", "correct"]] = ["train", True]  # right, but heard in training
    predictions.loc[predictions["sample_id"] == ids[0], ["split", "correct"]] = ["test", False]  # wrong
    predictions.loc[predictions["sample_id"] == ids[-1], ["split", "correct"]] = ["test", True]  # the one
    predictions.to_csv(model / "predictions.csv", index=False)
    assert [e.sample_id for e in find_examples(Predictor(model)) if e.label == label] == [str(ids[-1])]

    config = json.loads((model / "config.json").read_text())
    assert config.get("features_identity") and not own_dataset_changed({}, "anything")  # older models: unchanged
    (model / "config.json").write_text(json.dumps({**config, "features_identity": "generated again"}))
    parameters = pd.read_csv(tiny_model_dir.parent.parent / "parameters.csv")
    first = parameters.loc[parameters["family_name"] == label, "sample_id"].min()
    assert [e.sample_id for e in find_examples(Predictor(model)) if e.label == label] == [str(first)]

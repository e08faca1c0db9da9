"""The web front end of :class:`prediction.Predictor`: an upload page and a JSON API.

``create_app(predictor)`` builds the Flask app; ``make_server(app, ...)``
wraps it in a waitress server (``predict_webapp.py`` runs it)::

    GET  /                          the upload page (file picker, drag and drop,
                                    example clips); works without JavaScript
    POST /                          the page's plain form post: the page with the result
    POST /api/classify/instrument   form field ``audio_file`` -> JSON
                                    {"label", "probabilities", "model_id", "warnings", ...};
                                    ``?chromagram=1`` adds "chromagram_png" (a data: URI)
    GET  /api/model                 the loaded model: classes, metrics, date, settings
    GET  /examples/<sample_id>      an example clip from the model's dataset

Bad input is a 4xx with ``{"error": message, "status": code}``: no file or an
empty one (400), over ``MAX_UPLOAD_BYTES`` (413), an unsupported type (415),
a file that is not audio or is corrupt (422).  Uploads stay in memory (never
spooled to disk) and are dropped with the request.  Every asset is served by
the app; the Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import logging
import math
import mimetypes
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Request, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from ..dataset import PARAMETERS_CSV
from ..model_files import PREDICTIONS_CSV
from ..prediction import AudioError, Prediction, Predictor, read_audio

# Uploads larger than this are refused with 413.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Room for the multipart envelope around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
# Longest stretch of an upload decoded (a 10 MB MP3 can hold an hour).
MAX_UPLOAD_SECONDS = 60.0
# waitress: worker threads, and request bodies it buffers in memory (larger
# bodies get its own plain-text 413; Flask answers JSON below that).
SERVER_THREADS = 8
SERVER_MAX_BODY_BYTES = 16 * 1024 * 1024
# Example clips offered on the page: at most one per class, at most this many.
MAX_EXAMPLES = 8

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; media-src 'self' data: blob:; "
                           "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A bad request, answered with ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# AudioError.kind -> HTTP status.
AUDIO_ERROR_STATUS = {"missing": 400, "empty": 400, "unsupported": 415, "unreadable": 422}


class InMemoryRequest(Request):
    """Multipart file parts go to memory, not to a temporary file on disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


@dataclass
class Example:
    """A clip of the model's dataset offered on the page."""

    sample_id: str
    label: str
    title: str
    path: Path

    @property
    def mimetype(self) -> str:
        return mimetypes.guess_type(self.path.name)[0] or "application/octet-stream"


def create_app(predictor: Predictor, *, examples: list[Example] | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Flask:
    """The Flask app around a loaded ``predictor``.

    Parameters
    ----------
    predictor : the model, loaded once and shared by every request
    examples : clips offered on the page (default: :func:`find_examples`)
    max_upload_bytes : larger uploads get 413
    """
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + FORM_OVERHEAD_BYTES
    app.config["MAX_UPLOAD_BYTES"] = max_upload_bytes
    app.json.sort_keys = False
    app.add_template_filter(format_percent, "percent")
    if examples is None:
        examples = find_examples(predictor)
    examples_by_id = {example.sample_id: example for example in examples}
    model_info = predictor.describe()
    model_info.pop("model_dir", None)  # no server paths in the API
    page_context = {
        "model": model_info,
        "examples": examples,
        "pitch_ticks": pitch_ticks(predictor),
        "pitch_range": pitch_range(predictor),
        "max_upload_mb": max_upload_bytes / 1024 / 1024,
        "accept": ",".join(["audio/*", *_accepted_extensions()]),
    }

    def classify_upload() -> tuple[Prediction, str, bytes, str]:
        """(prediction, file name, bytes, mimetype) of the request's audio_file; ApiError if bad."""
        upload = request.files.get("audio_file")
        if upload is None:
            raise ApiError(400, "no file: send the audio as the form field 'audio_file' (multipart/form-data)")
        name = Path(upload.filename or "upload").name or "upload"
        data = upload.stream.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise ApiError(413, f"{name}: file too large (over {max_upload_bytes / 1024 / 1024:g} MB)")
        if not data:
            raise ApiError(400, "no file selected" if not upload.filename else f"{name}: empty file")
        prediction = classify_bytes(data, name)
        mimetype = upload.mimetype if upload.mimetype.startswith("audio/") else \
            mimetypes.guess_type(name)[0] or "application/octet-stream"
        return prediction, name, data, mimetype

    def classify_bytes(data: bytes, name: str) -> Prediction:
        try:
            samples, rate = read_audio(data, name=name, max_seconds=MAX_UPLOAD_SECONDS)
            return predictor.predict(samples, rate)
        except AudioError as error:
            raise ApiError(AUDIO_ERROR_STATUS.get(error.kind, 422), str(error)) from None

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.get("/")
    def index():
        return render_template("index.html", **page_context, result=None, error=None)

    @app.post("/")
    def index_post():
        """The page's plain form post (no JavaScript): classify, render the page with the result."""
        try:
            example_id = request.form.get("example")
            if example_id:
                example = examples_by_id.get(example_id)
                if example is None:
                    raise ApiError(404, f"no example {example_id!r}")
                prediction = classify_bytes(example.path.read_bytes(), example.path.name)
                name, audio_src = example.title, f"/examples/{example.sample_id}"
            else:
                prediction, name, data, mimetype = classify_upload()
                audio_src = f"data:{mimetype};base64,{base64.b64encode(data).decode('ascii')}"
        except ApiError as error:
            return render_template("index.html", **page_context, result=None, error=error.message), error.status
        result = {"name": name, "audio_src": audio_src, **result_json(prediction, predictor),
                  "chromagram_png": chromagram_data_uri(prediction.chromagram)}
        return render_template("index.html", **page_context, result=result, error=None)

    @app.post("/api/classify/instrument")
    def classify_api():
        prediction, *_ = classify_upload()
        body = result_json(prediction, predictor)
        if request.args.get("chromagram") not in (None, "", "0", "false"):
            body["chromagram_png"] = chromagram_data_uri(prediction.chromagram)
        return jsonify(body)

    @app.get("/api/model")
    def model_api():
        return jsonify({**model_info, "examples": [
            {"sample_id": e.sample_id, "label": e.label, "title": e.title, "url": f"/examples/{e.sample_id}"}
            for e in examples]})

    @app.get("/examples/<sample_id>")
    def example_audio(sample_id: str):
        example = examples_by_id.get(sample_id)
        if example is None:
            raise ApiError(404, f"no example {sample_id!r}")
        return send_file(example.path, mimetype=example.mimetype, download_name=example.path.name,
                         max_age=3600)

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return jsonify({"error": error.message, "status": error.status}), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = f"upload too large (over {max_upload_bytes / 1024 / 1024:g} MB)"
        if request.path == "/" and request.method == "POST":
            return render_template("index.html", **page_context, result=None, error=message), status
        return jsonify({"error": message, "status": status}), status

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unexpected error in %s %s", request.method, request.path)
        return jsonify({"error": "internal error", "status": 500}), 500

    return app


def result_json(prediction: Prediction, predictor: Predictor) -> dict[str, Any]:
    """The API's answer: label, probabilities, model_id, warnings, then the measurements."""
    body = prediction.to_json()
    return {"label": body.pop("label"), "probabilities": body.pop("probabilities"),
            "model_id": predictor.model_id, "warnings": body.pop("warnings"), **body}


def make_server(app: Flask, *, host: str = "127.0.0.1", port: int = 5000, threads: int = SERVER_THREADS):
    """A waitress server for ``app`` (``port=0``: a free port, see ``server.effective_port``).

    Request bodies up to ``SERVER_MAX_BODY_BYTES`` stay in memory
    (``inbuf_overflow``), so uploads never touch the disk.
    """
    import waitress

    return waitress.create_server(app, host=host, port=port, threads=threads,
                                  max_request_body_size=SERVER_MAX_BODY_BYTES,
                                  inbuf_overflow=SERVER_MAX_BODY_BYTES, ident="instrument-classifier")


# ---------------------------------------------------------------------------
# Examples


def find_examples(predictor: Predictor, *, limit: int = MAX_EXAMPLES) -> list[Example]:
    """One clip per class from the model's dataset, preferring test clips it got right.

    Reads the model folder's predictions.csv (or the dataset's parameters.csv)
    and keeps clips whose audio file exists; [] when the dataset is elsewhere.
    """
    import pandas as pd

    from ..features import note_name

    dataset = predictor.bundle.config.get("dataset")
    if not dataset or not Path(dataset).is_dir():
        return []
    dataset = Path(dataset)
    table = None
    for path in (Path(predictor.model_dir) / PREDICTIONS_CSV, dataset / PARAMETERS_CSV):
        try:
            table = pd.read_csv(path)
            break
        except (OSError, ValueError):
            continue
    if table is None or "audio_file" not in table.columns or "sample_id" not in table.columns:
        return []
    label_column = next((c for c in ("true", "family_name") if c in table.columns), None)
    if label_column is None:
        return []
    rank = np.zeros(len(table))
    if "split" in table.columns:
        rank -= 2 * (table["split"] == "test").to_numpy()
    if "correct" in table.columns:
        rank -= table["correct"].astype(bool).to_numpy()
    table = table.assign(_rank=rank).sort_values(["_rank", "sample_id"], kind="stable")
    examples = []
    for label in predictor.class_names:
        rows = table[table[label_column].astype(str) == label]
        for row in rows.itertuples():
            path = dataset / str(row.audio_file)
            if path.is_file():
                title = label
                if hasattr(row, "instrument_name"):
                    title += f" · {str(row.instrument_name).replace('_', ' ')}"
                if hasattr(row, "midi_number"):
                    title += f" · {note_name(int(row.midi_number))}"
                examples.append(Example(sample_id=str(row.sample_id), label=label, title=title, path=path))
                break
        if len(examples) >= limit:
            break
    return examples


# ---------------------------------------------------------------------------
# The chromagram as a PNG


def pitch_ticks(predictor: Predictor) -> list[dict[str, Any]]:
    """Labels of the C of every octave: {"name", "percent" from the bottom of the image}."""
    from ..features import note_name

    pitches = predictor.extractor.bin_pitches()
    n_bins = len(pitches)
    return [{"name": note_name(int(p)), "percent": round(100 * (b + 0.5) / n_bins, 2)}
            for b, p in enumerate(pitches) if p == int(p) and int(p) % 12 == 0]


def pitch_range(predictor: Predictor) -> tuple[str, str]:
    """Note names of the lowest and highest chromagram bins, e.g. ('A0', 'D#10')."""
    from ..features import note_name

    pitches = predictor.extractor.bin_pitches()
    return note_name(int(round(pitches[0]))), note_name(int(round(pitches[-1])))


@functools.cache
def _colormap() -> np.ndarray:
    """matplotlib's 'magma' as a (256, 3) uint8 lookup table (as the features plot uses)."""
    from matplotlib import colormaps

    return (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def chromagram_png(chromagram: np.ndarray) -> bytes:
    """A chromagram [shape=(frames, bins)] in [0, 1] as an RGB PNG: time across, pitch up, one pixel a cell."""
    values = np.clip(np.nan_to_num(np.asarray(chromagram, dtype=np.float32)), 0, 1)
    image = _colormap()[np.round(values.T[::-1] * 255).astype(np.uint8)]  # (bins, frames, 3), low pitch at the bottom
    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))  # filter 0 per scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", binascii.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def chromagram_data_uri(chromagram: np.ndarray | None) -> str | None:
    """:func:`chromagram_png` as a ``data:image/png;base64,...`` URI (None for None)."""
    if chromagram is None:
        return None
    return "data:image/png;base64," + base64.b64encode(chromagram_png(chromagram)).decode("ascii")


def _accepted_extensions() -> list[str]:
    from ..prediction import SUPPORTED_EXTENSIONS

    return list(SUPPORTED_EXTENSIONS)


def format_percent(value: float) -> str:
    """0.912 -> '91.2 %' (the page's probability labels)."""
    return f"{100 * value:.1f} %" if math.isfinite(value) else "–"

"""The web front end of :class:`prediction.Predictor`: an upload page and a JSON API.

``create_app(predictor)`` builds the Flask app: the views of :data:`blueprint`
over one :class:`Service` (the model, the example clips); ``make_server(app, ...)``
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
empty one, a malformed form (400), a request over ``MAX_REQUEST_BYTES``, a
file over ``MAX_UPLOAD_BYTES`` or a form over its limits (413, saying which),
an unsupported type (415), a file that is not audio or is corrupt (422).
waitress's own refusals (a body over the limit, refused from its
Content-Length before it is read; a malformed request) are JSON too.

Bounded cost.  Uploads stay in memory (waitress never spools a body or a
reply to disk) and are dropped with the request; a reply never carries the
upload back.  At most ``MAX_UPLOAD_SAMPLES`` samples x channels (and
``MAX_UPLOAD_SECONDS``) of an upload are decoded, in blocks, so no upload
costs more than ~100 MB or a fraction of a second, whatever it holds.
The limits are in :mod:`webapp.limits`; the waitress server, which also
bounds connections and idle time, in :mod:`webapp.server`.  Every asset is
served by the app; the Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

import base64
import binascii
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
from flask import Blueprint, Flask, Request, current_app, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from ..cli import UserError
from ..dataset import PARAMETERS_CSV
from ..model_files import PREDICTIONS_CSV, own_dataset_changed
from ..plots import colormap_table, note_name, octave_ticks
from ..audio import SUPPORTED_EXTENSIONS, AudioError
from ..prediction import Prediction, PreparedClip, Predictor
from .limits import (FORM_OVERHEAD_BYTES, MAX_FORM_FIELD_BYTES, MAX_FORM_PARTS, MAX_REQUEST_BYTES,  # noqa: F401
                     MAX_UPLOAD_BYTES, MAX_UPLOAD_SAMPLES, MAX_UPLOAD_SECONDS, request_too_large_message)
from .server import make_server  # noqa: F401  (the package's API: create_app, make_server)

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
    """Multipart file parts go to memory, not to a temporary file on disk.

    A malformed form raises ValueError (werkzeug would silently drop it, and a
    file name that is not UTF-8 would read as "no file").
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()

    def make_form_data_parser(self) -> FormDataParser:
        return self.form_data_parser_class(
            stream_factory=self._get_file_stream, max_form_memory_size=self.max_form_memory_size,
            max_content_length=self.max_content_length, max_form_parts=self.max_form_parts,
            cls=self.parameter_storage_class, silent=False)


def form_parts() -> tuple[Any, Any]:
    """(request.form, request.files); ApiError for a malformed or oversized form."""
    try:
        return request.form, request.files
    except RequestEntityTooLarge:
        raise ApiError(413, form_too_large_message()) from None
    except UnicodeDecodeError:
        raise ApiError(400, "malformed form: a part's headers are not UTF-8 (a file name in another "
                            "encoding?); rename the file or send its name in UTF-8") from None
    except ValueError as error:
        raise ApiError(400, f"malformed form: {error or 'cannot parse multipart/form-data'}") from None


def form_too_large_message() -> str:
    """What was too large about this request, for a 413."""
    size = request.content_length
    if size is not None and size > current_app.config["MAX_CONTENT_LENGTH"]:
        return request_too_large_message(size, current_app.config["MAX_UPLOAD_BYTES"])
    return (f"form too large: a text field over {MAX_FORM_FIELD_BYTES // 1024} kB or more than "
            f"{MAX_FORM_PARTS} parts (send the audio as the one file field 'audio_file')")


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


@dataclass
class Service:
    """What the views share, built once per app: the model, the examples, the page's fixed context."""

    predictor: Predictor
    examples: list[Example]
    examples_by_id: dict[str, Example]
    max_upload_bytes: int
    model_info: dict[str, Any]
    page_context: dict[str, Any]

    @classmethod
    def create(cls, predictor: Predictor, examples: list[Example], max_upload_bytes: int) -> Service:
        model_info = predictor.describe()
        model_info.pop("model_dir", None)  # no server paths in the API
        page_context = {
            "model": model_info,
            "examples": examples,
            "pitch_ticks": pitch_ticks(predictor),
            "pitch_range": pitch_range(predictor),
            "max_upload_mb": max_upload_bytes / 1024 / 1024,
            "max_upload_bytes": max_upload_bytes,
            "accept": ",".join(["audio/*", *SUPPORTED_EXTENSIONS]),
        }
        return cls(predictor, examples, {example.sample_id: example for example in examples}, max_upload_bytes,
                   model_info, page_context)


SERVICE_KEY = "instrument_classifier"


def service() -> Service:
    """The current app's :class:`Service`."""
    return current_app.extensions[SERVICE_KEY]


def create_app(predictor: Predictor, *, examples: list[Example] | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Flask:
    """The Flask app around a loaded ``predictor``: the :data:`blueprint`'s views over one :class:`Service`.

    Parameters
    ----------
    predictor : the model, loaded once and shared by every request
    examples : clips offered on the page (default: :func:`find_examples`)
    max_upload_bytes : larger uploads get 413
    """
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + FORM_OVERHEAD_BYTES
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_FIELD_BYTES
    app.config["MAX_UPLOAD_BYTES"] = max_upload_bytes
    app.json.sort_keys = False
    app.add_template_filter(format_percent, "percent")
    app.extensions[SERVICE_KEY] = Service.create(
        predictor, find_examples(predictor) if examples is None else examples, max_upload_bytes)
    app.register_blueprint(blueprint)
    return app


# ---------------------------------------------------------------------------
# The views

blueprint = Blueprint("classifier", __name__)


def classify_upload() -> tuple[Prediction, str]:
    """(prediction, file name) of the request's audio_file; ApiError if bad."""
    limit = service().max_upload_bytes
    upload = form_parts()[1].get("audio_file")
    if upload is None:
        raise ApiError(400, "no file: send the audio as the form field 'audio_file' (multipart/form-data)")
    name = Path(upload.filename or "upload").name or "upload"
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"{name}: file too large (over {limit / 1024 / 1024:g} MB)")
    if not data:
        raise ApiError(400, "no file selected" if not upload.filename else f"{name}: empty file")
    return classify_bytes(data, name), name


def classify_bytes(data: bytes, name: str) -> Prediction:
    """Classify a file's bytes, reading at most :data:`MAX_UPLOAD_SECONDS` / :data:`MAX_UPLOAD_SAMPLES` of it."""
    predictor = service().predictor
    try:
        clip: PreparedClip = predictor.prepare_file(data, name=name, max_seconds=MAX_UPLOAD_SECONDS,
                                                    max_samples=MAX_UPLOAD_SAMPLES)
    except AudioError as error:
        raise ApiError(AUDIO_ERROR_STATUS.get(error.kind, 422), str(error)) from None
    return predictor.predict_prepared([clip])[0]


def upload_page(*, result: dict | None = None, error: str | None = None) -> str:
    """The upload page, with a result or an error."""
    return render_template("index.html", **service().page_context, result=result, error=error)


@blueprint.after_app_request
def security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def existing_example(sample_id: str) -> "Example":
    """The example clip of that id, or a 404: unknown, or its file gone since the server started."""
    example = service().examples_by_id.get(sample_id)
    if example is None:
        raise ApiError(404, f"no example {sample_id!r}")
    if not example.path.is_file():
        raise ApiError(404, f"the example clip {example.path.name} is no longer on the server")
    return example


@blueprint.get("/")
def index():
    return upload_page()


@blueprint.post("/")
def index_post():
    """The page's plain form post (no JavaScript): classify, render the page with the result."""
    try:
        example_id = form_parts()[0].get("example")
        if example_id:
            example = existing_example(example_id)
            try:
                data = example.path.read_bytes()
            except OSError:
                raise ApiError(404, f"the example clip {example.path.name} is no longer on the server") from None
            prediction = classify_bytes(data, example.path.name)
            name, audio_src = example.title, f"/examples/{example.sample_id}"
        else:
            # No player for an upload: the reply would carry the file back
            # (and waitress would spool a large reply to disk).
            prediction, name = classify_upload()
            audio_src = None
    except ApiError as error:
        return upload_page(error=error.message), error.status
    result = {"name": name, "audio_src": audio_src, **result_json(prediction, service().predictor),
              "chromagram_png": chromagram_data_uri(prediction.chromagram)}
    return upload_page(result=result)


@blueprint.post("/api/classify/instrument")
def classify_api():
    prediction, _ = classify_upload()
    body = result_json(prediction, service().predictor)
    if request.args.get("chromagram") not in (None, "", "0", "false"):
        body["chromagram_png"] = chromagram_data_uri(prediction.chromagram)
    return jsonify(body)


@blueprint.get("/api/model")
def model_api():
    return jsonify({**service().model_info, "examples": [
        {"sample_id": e.sample_id, "label": e.label, "title": e.title, "url": f"/examples/{e.sample_id}"}
        for e in service().examples]})


@blueprint.get("/examples/<sample_id>")
def example_audio(sample_id: str):
    example = existing_example(sample_id)
    return send_file(example.path, mimetype=example.mimetype, download_name=example.path.name, max_age=3600)


@blueprint.app_errorhandler(ApiError)
def api_error(error: ApiError):
    return jsonify({"error": error.message, "status": error.status}), error.status


@blueprint.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    status = error.code or 500
    message = error.description or error.name
    if status == 413:
        message = form_too_large_message()
    if request.path == "/" and request.method == "POST":
        return upload_page(error=message), status
    return jsonify({"error": message, "status": status}), status


@blueprint.app_errorhandler(Exception)
def unexpected_error(error: Exception):
    log.exception("unexpected error in %s %s", request.method, request.path)
    return jsonify({"error": "internal error", "status": 500}), 500


def result_json(prediction: Prediction, predictor: Predictor) -> dict[str, Any]:
    """The API's answer: label, probabilities, model_id, warnings, then the measurements."""
    body = prediction.to_json()
    return {"label": body.pop("label"), "probabilities": body.pop("probabilities"),
            "model_id": predictor.model_id, "warnings": body.pop("warnings"), **body}


# ---------------------------------------------------------------------------
# Examples


def find_examples(predictor: Predictor, *, limit: int = MAX_EXAMPLES) -> list[Example]:
    """One clip per class from the model's dataset, preferring test clips it got right.

    Reads the model folder's predictions.csv (or the dataset's parameters.csv)
    and keeps clips whose audio file exists; [] when the dataset is elsewhere.
    """
    import pandas as pd

    dataset = predictor.bundle.config.get("dataset")
    if not dataset or not Path(dataset).is_dir():
        return []
    dataset = Path(dataset)
    from ..feature_store import features_identity

    sources = [Path(predictor.model_dir) / PREDICTIONS_CSV, dataset / PARAMETERS_CSV]
    if own_dataset_changed(predictor.bundle.config, features_identity(dataset)):
        sources = sources[1:]  # generated again since training: the predictions are of other clips
    table = None
    for path in sources:
        try:
            table = pd.read_csv(path)
            break
        except (OSError, ValueError):
            continue
    if table is None or "audio_file" not in table.columns or "sample_id" not in table.columns:
        return []
    if "true" not in table.columns:  # parameters.csv: the labels of the model's target
        from ..training_data import target_labels

        try:
            table = table.assign(true=target_labels(table, predictor.bundle.target))
        except (UserError, KeyError):
            return []
    rank = np.zeros(len(table))
    if "split" in table.columns:
        rank -= 2 * (table["split"] == "test").to_numpy()
    if "correct" in table.columns:
        rank -= table["correct"].astype(bool).to_numpy()
    table = table.assign(_rank=rank).sort_values(["_rank", "sample_id"], kind="stable")
    examples = []
    for label in predictor.class_names:
        rows = table[table["true"].astype(str) == label]
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
    pitches = predictor.extractor.bin_pitches()
    return [{"name": note_name(int(pitches[b])), "percent": round(100 * (b + 0.5) / len(pitches), 2)}
            for b in octave_ticks(pitches)]


def pitch_range(predictor: Predictor) -> tuple[str, str]:
    """Note names of the lowest and highest chromagram bins, e.g. ('A0', 'D#10')."""
    pitches = predictor.extractor.bin_pitches()
    return note_name(int(round(pitches[0]))), note_name(int(round(pitches[-1])))


def chromagram_png(chromagram: np.ndarray) -> bytes:
    """A chromagram [shape=(frames, bins)] in [0, 1] as an RGB PNG: time across, pitch up, one pixel a cell."""
    values = np.clip(np.nan_to_num(np.asarray(chromagram, dtype=np.float32)), 0, 1)
    image = colormap_table()[np.round(values.T[::-1] * 255).astype(np.uint8)]  # (bins, frames, 3), low pitch at the bottom
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


def format_percent(value: float) -> str:
    """0.912 -> '91.2 %' (the page's probability labels)."""
    return f"{100 * value:.1f} %" if math.isfinite(value) else "–"

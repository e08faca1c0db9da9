"""Fuzzing the web app's real server with broken audio files (issue 13: keep it fixed).

Hypothesis, seeded (``derandomize``): a few hundred uploads, each a valid file
(WAV, FLAC, OGG, MP3; 1 to 64 channels; 1 kHz to 768 kHz; samples from
denormal to 1e300, NaN) with its header bytes overwritten, a header field set
to an extreme value, bits flipped or the file cut short, sent to the API or
the no-JavaScript form post.  Whatever arrives: never a 5xx, always the JSON
(or page) of a 2xx or 4xx, the server alive afterwards, and the memory of
the whole run bounded.  A failure prints the smallest upload that fails.
"""

from __future__ import annotations

import collections
import io
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import post_form, request

# Uploads per run: ~15 s on 2 cores.
FUZZ_EXAMPLES = 300
# Traced memory (numpy arrays included) at the run's peak, and the process's growth over it.
MAX_TRACED_BYTES = 200 * 2**20
MAX_RSS_GROWTH_BYTES = 200 * 2**20
ENDPOINTS = ("/api/classify/instrument", "/")


def encode(samples, rate, *, format, subtype, frames_per_write=4096) -> bytes:
    """An in-memory file (written in blocks: libsndfile 1.2's Vorbis encoder crashes on large writes)."""
    samples = np.asarray(samples)
    buffer = io.BytesIO()
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with sf.SoundFile(buffer, "w", rate, channels, format=format, subtype=subtype) as audio:
        for start in range(0, len(samples), frames_per_write):
            audio.write(samples[start:start + frames_per_write])
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bases(clips):
    """Valid files to break: [(name, bytes, [(offset, size) of header fields])]."""
    note = sf.read(io.BytesIO(clips[0][1]), dtype="float64")[0][:22_050]  # 0.5 s of a dataset clip
    rng = np.random.default_rng(13)

    def tone(rate, seconds=0.25, channels=1):
        t = np.arange(int(rate * seconds)) / rate
        wave = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
        return np.stack([wave] * channels, axis=1) if channels > 1 else wave

    files = {
        "note.wav": encode(note, 44_100, format="WAV", subtype="PCM_16"),
        "note.flac": encode(np.stack([note, note], axis=1), 44_100, format="FLAC", subtype="PCM_24"),
        "note.ogg": encode(note, 44_100, format="OGG", subtype="VORBIS"),
        "note.aiff": encode(note, 44_100, format="AIFF", subtype="PCM_16"),
        "hi-res.flac": encode(tone(192_000, channels=8), 192_000, format="FLAC", subtype="PCM_16"),
        "edge-low.wav": encode(tone(1_000, seconds=1), 1_000, format="WAV", subtype="PCM_16"),
        "edge-high.wav": encode(tone(768_000, seconds=0.05), 768_000, format="WAV", subtype="PCM_16"),
        "rate-1hz.wav": encode(np.zeros(10), 1, format="WAV", subtype="PCM_16"),
        "channels-64.wav": encode(rng.normal(0, 0.1, (2_000, 64)), 44_100, format="WAV", subtype="PCM_16"),
        "peak-3e38.wav": encode(note / np.abs(note).max() * 3e38, 48_000, format="WAV", subtype="FLOAT"),
        "peak-1e300.wav": encode(note / np.abs(note).max() * 1e300, 8_000, format="WAV", subtype="DOUBLE"),
        "denormal.wav": encode(np.full(4_410, 1e-45), 44_100, format="WAV", subtype="FLOAT"),
        "nan.wav": encode(np.where(np.arange(4_410) == 100, np.nan, 0.1), 44_100, format="WAV", subtype="FLOAT"),
        "silence-60s.flac": encode(np.zeros((60 * 44_100, 2)), 44_100, format="FLAC", subtype="PCM_16",
                                   frames_per_write=1 << 20),
    }
    if "MP3" in sf.available_formats():
        files["note.mp3"] = encode(note, 44_100, format="MP3", subtype="MPEG_LAYER_III")
    return [(name, data, header_fields(data)) for name, data in files.items()]


def header_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of a WAV's channels, rate, byte rate, block align, bits and data size; the RIFF size."""
    fields = [(4, 4)]
    fmt = data.find(b"fmt ")
    if data.startswith(b"RIFF") and fmt > 0:
        fields += [(fmt + 10, 2), (fmt + 12, 4), (fmt + 16, 4), (fmt + 20, 2), (fmt + 22, 2)]
        chunk = data.find(b"data", fmt)
        if chunk > 0:
            fields.append((chunk + 4, 4))
    return fields


@st.composite
def broken_uploads(draw, bases):
    """(file name, bytes): a base file with its header overwritten, a field set, bits flipped, or cut short."""
    name, original, fields = draw(st.sampled_from(bases))
    data = bytearray(original)
    how = draw(st.sampled_from(["header bytes", "header field", "bit flips", "cut short", "as is"]))
    if how == "header bytes":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, min(len(data), 128) - 1))] = draw(st.integers(0, 255))
    elif how == "header field":
        offset, size = draw(st.sampled_from(fields))
        top = 2 ** (8 * size) - 1
        value = draw(st.sampled_from([0, 1, 2, top // 2, top // 2 + 1, top]) | st.integers(0, top))
        data[offset:offset + size] = value.to_bytes(size, "little")
    elif how == "bit flips":
        for _ in range(draw(st.integers(1, 64))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
    elif how == "cut short":
        del data[draw(st.integers(0, len(data) - 1)):]
    suffix = draw(st.sampled_from([Path(name).suffix] * 6 + [".wav", ".flac", ".ogg", ".mp3", ".txt", ""]))
    return f"fuzz{suffix}", bytes(data)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_broken_audio_never_gets_a_5xx(server, bases, predictor, clips):
    statuses = collections.Counter()

    @settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(upload=broken_uploads(bases), endpoint=st.sampled_from(ENDPOINTS))
    def upload_is_answered(upload, endpoint):
        name, data = upload
        status, headers, body = post_form(server, endpoint, files={"audio_file": (name, data, "audio/wav")},
                                          timeout=60)
        statuses[status] += 1
        assert status < 500, (status, body[:300])
        if endpoint == "/":
            assert headers["Content-Type"].startswith("text/html") and b'id="upload-form"' in body
            return
        answer = json.loads(body)
        if status == 200:  # an answer that makes sense: probabilities of every class, the label the likeliest
            probabilities = answer["probabilities"]
            assert list(probabilities) == predictor.class_names and abs(sum(probabilities.values()) - 1) < 1e-3
            assert answer["label"] == max(probabilities, key=probabilities.get)
        else:
            assert 400 <= status < 500 and answer["status"] == status and answer["error"]
            assert "\n" not in answer["error"]

    rss_before = rss_bytes()
    tracemalloc.start()
    try:
        upload_is_answered()
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss_growth = rss_bytes() - rss_before
    print(f"statuses {dict(sorted(statuses.items()))}, traced peak {traced_peak / 2**20:.0f} MiB, "
          f"RSS growth {rss_growth / 2**20:.0f} MiB")
    assert statuses[200] > 0 and sum(n for s, n in statuses.items() if 400 <= s < 500) > 0  # both paths ran
    assert traced_peak < MAX_TRACED_BYTES
    assert rss_growth < MAX_RSS_GROWTH_BYTES
    # Still serving, and still right.
    assert request(server, "GET", "/api/model", timeout=10)[0] == 200
    name, data = clips[0]
    status, _, body = post_form(server, files={"audio_file": (name, data, "audio/flac")}, timeout=10)
    assert status == 200 and json.loads(body)["label"] == predictor.predict_file(io.BytesIO(data), name=name).label

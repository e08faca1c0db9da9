"""Compressed SoundFonts: the decoded copy loads faster and renders exactly what the .sf3 renders."""

import os
import subprocess
import sys

import numpy as np
import pytest

from instrument_classifier.defaults import REPO_DIR
from instrument_classifier.sf3 import SHDR, is_sf3, uncompressed
from instrument_classifier.soundfonts import resolve_soundfonts
from instrument_classifier.synthesis import Renderer
from instrument_classifier.variation import Variation, note_events

RATE = 44100


@pytest.fixture(scope="module")
def mono_sf3():
    path = resolve_soundfonts(["FluidR3Mono"])[0].path
    assert is_sf3(path)
    return path


@pytest.fixture(scope="module")
def decoded_dir(mono_sf3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoded")
    copy = uncompressed(mono_sf3, folder)
    assert copy.parent == folder and copy.suffix == ".sf2" and not is_sf3(copy)
    return folder


def test_decoded_copy_renders_the_same_bytes_as_the_sf3(mono_sf3, decoded_dir):
    # Plain notes over the whole range, and the variation's events: pitch bends, a brightness NRPN,
    # long releases that play samples to their end.
    variations = [Variation(), Variation(detune_cents=-30.0, vibrato_cents=25.0, vibrato_hz=5.5),
                  Variation(brightness_cents=-2400.0, note_seconds=0.3)]
    with Renderer(mono_sf3, decoded_copies=None) as compressed, Renderer(mono_sf3, decoded_copies=decoded_dir) as copy:
        audible = 0
        for program in range(0, 128, 5):
            for pitch in (28, 45, 60, 76, 96):
                variation = variations[(program + pitch) % len(variations)]
                events = note_events(program=program, pitch=pitch, velocity=40 + program % 80, variation=variation,
                                     sample_rate=RATE, clip_seconds=2.0)
                a = compressed.render_events(events, 2 * RATE)
                b = copy.render_events(events, 2 * RATE)
                assert a.tobytes() == b.tobytes(), (program, pitch, variation)
                audible += np.abs(a).max() > 1e-3
    assert audible > 100  # of 130 (a few programs are silent at the extremes)


def test_the_copy_is_a_soundfont_by_the_specification(mono_sf3, decoded_dir):
    """Each sample is followed by 46 zero words (SoundFont 2.01, 7.10): FluidSynth renders the same without them,
    other readers (a sampler interpolating past a sample's end) would not."""
    from instrument_classifier import sf3

    data = uncompressed(mono_sf3, decoded_dir).read_bytes()
    lists = sf3._lists(data)
    smpl, = (c for c in sf3._chunks(data, *lists[b"sdta"]) if c.id == b"smpl")
    shdr, = (c for c in sf3._chunks(data, *lists[b"pdta"]) if c.id == b"shdr")
    words = np.frombuffer(data, "<i2", count=smpl.size // 2, offset=smpl.offset)
    records = [sf3.SHDR.unpack_from(data, shdr.offset + k * sf3.SHDR.size) for k in range(shdr.size // sf3.SHDR.size)]
    spans = sorted((start, end) for _, start, end, *_ in records[:-1])  # the last record ends the list (EOS)
    assert len(spans) > 500
    for (start, end), (next_start, _) in zip(spans, [*spans[1:], (len(words), None)]):
        assert start < end and next_start - end >= 46 and not words[end:end + 46].any(), (start, end)


def test_the_copy_is_written_once_and_other_fonts_load_as_they_are(mono_sf3, decoded_dir):
    copy = uncompressed(mono_sf3, decoded_dir)
    written = copy.stat().st_mtime_ns
    assert uncompressed(mono_sf3, decoded_dir) == copy and copy.stat().st_mtime_ns == written
    assert [p.name for p in decoded_dir.iterdir() if p.suffix != ".lock"] == [copy.name]  # no temporary file left
    sf2 = resolve_soundfonts(["TimGM6mb"])[0].path
    assert uncompressed(sf2, decoded_dir) == sf2
    assert uncompressed(mono_sf3, None) == mono_sf3


def test_a_font_that_cannot_be_decoded_loads_as_it_is_and_leaves_nothing(mono_sf3, tmp_path, capsys):
    data = mono_sf3.read_bytes()
    # A truncated .sf3 (its header still says version 3).
    truncated = tmp_path / "truncated.sf3"
    truncated.write_bytes(data[:200_000])
    # A sample whose loop ends after the sample: FluidSynth would mend it differently in a copy.
    looped = tmp_path / "looped.sf3"
    last = len(data) - 2 * SHDR.size  # the sample headers end the file: the last sample's, then a terminal one
    record = list(SHDR.unpack_from(data, last))
    assert record[0].startswith(b"55_126") and record[9] == 0x11  # a mono Vorbis sample
    record[4] = 10**7
    looped.write_bytes(data[:last] + SHDR.pack(*record) + data[last + SHDR.size:])
    cache = tmp_path / "cache"
    assert uncompressed(truncated, cache) == truncated
    assert uncompressed(looped, cache) == looped
    assert [p for p in cache.iterdir() if p.suffix != ".lock"] == []  # nothing half-written
    # A cache folder that cannot be made.
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert uncompressed(mono_sf3, blocked / "cache") == mono_sf3
    err = capsys.readouterr().err
    assert err.count("loading it compressed") == 3 and "loops outside itself" in err and "Traceback" not in err


def test_a_changed_font_gets_a_new_copy_and_the_old_one_goes(mono_sf3, tmp_path):
    font = tmp_path / "font.sf3"
    font.write_bytes(mono_sf3.read_bytes())
    first = uncompressed(font, tmp_path / "cache")
    os.utime(font, ns=(1_000_000_000, 1_000_000_000))
    second = uncompressed(font, tmp_path / "cache")
    assert second != first and second.is_file() and not first.exists()
    # Another font of the same file name elsewhere keeps its own copy.
    (tmp_path / "elsewhere").mkdir()
    namesake = tmp_path / "elsewhere" / "font.sf3"
    namesake.write_bytes(font.read_bytes())
    third = uncompressed(namesake, tmp_path / "cache")
    assert third != second and third.is_file() and second.is_file()


def test_processes_that_start_together_decode_once(mono_sf3, tmp_path):
    # A cluster's worker processes all reach their first task at once: one decodes, the others wait for it.
    code = ("import sys; from instrument_classifier.sf3 import uncompressed; "
            "print(uncompressed(sys.argv[1], sys.argv[2]))")
    processes = [subprocess.Popen([sys.executable, "-c", code, str(mono_sf3), str(tmp_path / "cache")],
                                  cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(3)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    assert len({out.strip() for out, _ in outputs}) == 1 and outputs[0][0].strip().endswith(".sf2")
    assert sum(err.count("decoding FluidR3Mono_GM.sf3 once") for _, err in outputs) == 1

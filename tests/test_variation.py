"""The SoundFont catalogue, the variation of the clips, and render_note.py."""

from __future__ import annotations

import dataclasses
import filecmp
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import fluidsynth_wrapper
import generate_audio_samples
import render_note
from conftest import make_dataset
from instrument_classifier import soundfonts
from instrument_classifier.cli import UserError
from instrument_classifier.defaults import SAMPLE_RATE
from instrument_classifier.instruments import pitch_number
from instrument_classifier.recording import apply_recording_chain
from instrument_classifier.synthesis import Renderer
from instrument_classifier.variation import RECIPES, Variation, get_recipe, note_events

RATE = 44_100
# The two small fonts of the catalogue (fast to load), one per lineage's smaller member.
SMALL_FONTS = ["TimGM6mb", "sf_GMbank"]


# ---------------------------------------------------------------------------
# The catalogue


def test_catalogue_resolves_every_listed_font():
    catalogue = soundfonts.load_catalogue()
    assert {font.name for font in catalogue} >= {"FluidR3_GM", "FluidR3Mono", "MuseScore_General", "TimGM6mb",
                                                 "sf_GMbank", "additive"}
    resolved = soundfonts.resolve_soundfonts(["all"])
    assert [font.name for font in resolved] == [font.name for font in catalogue]
    for font in resolved:
        assert font.builtin or (font.path.is_file() and font.lineage in ("fluid", "gs"))
        # FluidSynth loads it (.sf3 too), or it is our synthesiser, and it plays a violin.
        with font.renderer(RATE) as renderer:
            events = note_events(program=40, pitch=69, velocity=100, variation=Variation(note_seconds=0.5),
                                 sample_rate=RATE, clip_seconds=0.5)
            audio = renderer.render_events(events, RATE // 2)
        assert np.abs(audio).max() > 1e-3, font.name
    assert soundfonts.lineages()["gs"] == ["TimGM6mb", "sf_GMbank"]
    assert soundfonts.lineages()["own"] == ["additive"]


def test_fonts_by_name_are_case_blind_and_a_path_outside_the_catalogue_is_its_own_font(tmp_path):
    assert soundfonts.resolve_soundfonts(["timgm6MB"])[0].name == "TimGM6mb"
    copy = tmp_path / "my_font.sf2"
    copy.write_bytes(soundfonts.resolve_soundfonts(["sf_GMbank"])[0].path.read_bytes())
    font = soundfonts.resolve_soundfonts([str(copy)])[0]
    assert (font.name, font.lineage) == ("my_font.sf2", "other")
    # The catalogue's own file by path is the catalogue font.
    assert soundfonts.resolve_soundfonts(["/usr/share/sounds/sf2/TimGM6mb.sf2"])[0].lineage == "gs"


def test_a_missing_font_names_its_debian_package(monkeypatch):
    font = soundfonts.SoundFont("Nowhere", soundfonts.Path("/nonexistent/nowhere.sf2"), "x", "nowhere-soundfont")
    with pytest.raises(UserError, match="install the Debian package nowhere-soundfont"):
        soundfonts.installed(font)
    # by its name, and within --soundfont all (not a FluidSynth failure in a worker later)
    monkeypatch.setattr(soundfonts, "load_catalogue", lambda *args: (*soundfonts._read_catalogue(
        str(soundfonts.SOUNDFONTS_CSV)), font))
    for specs in (["nowhere"], ["all"]):
        with pytest.raises(UserError, match="SoundFont Nowhere is not installed .*install the Debian package "
                                            "nowhere-soundfont"):
            soundfonts.resolve_soundfonts(specs)


def test_two_fonts_of_one_name_are_refused(tmp_path):
    """parameters.csv names a clip's font by its name: two files of one name would be one font to a split."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "piano.sf2").write_bytes(soundfonts.resolve_soundfonts(["TimGM6mb"])[0].path.read_bytes())
    with pytest.raises(UserError, match="two different SoundFonts are both called 'piano.sf2'; rename one file"):
        soundfonts.resolve_soundfonts([str(tmp_path / "a" / "piano.sf2"), str(tmp_path / "b" / "piano.sf2")])


@pytest.mark.parametrize("argv, message", [
    (["--soundfont", "NoSuchFont"], "unknown SoundFont 'NoSuchFont'"),
    (["--variation", "loud"], "invalid choice"),
    (["--variation", "realistic", "--vary", "room_probability=2"], "room_probability must be a probability"),
    (["--variation", "realistic", "--vary", "room_rt60=0.5:9"], "room_rt60 range 0.5:9 must be"),
    (["--variation", "realistic", "--vary", "colour=1"], "bad --vary 'colour=1'"),
    (["--variation", "realistic", "--vary", "noise_db=loud"], "is not a number"),
    (["--variation", "realistic", "--vary", "eq_highpass_hz=1500:2000", "--vary", "eq_lowpass_hz=1000:1200"],
     "must lie below eq_lowpass_hz range 1000:1200"),
    (["--variation", "realistic", "--vary", "codec_quality=0:9.5"], "codec_quality is a whole number"),
])
def test_bad_font_and_variation_options_are_one_line_errors(tmp_path, capsys, argv, message):
    try:
        status = generate_audio_samples.main(["-c", "4", "-o", str(tmp_path / "out"), *argv])
    except SystemExit as exit:  # argparse's own usage errors
        status = exit.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# A multi-font dataset with variation


@pytest.fixture(scope="module")
def varied_dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("varied") / "dataset", count=24, seed=5, jobs=1,
                        soundfonts=SMALL_FONTS, variation="realistic")


def test_each_clip_records_its_font_lineage_and_variation(varied_dataset):
    parameters = pd.read_csv(varied_dataset / "parameters.csv")
    assert list(parameters["soundfont"]) == SMALL_FONTS * 12
    assert set(parameters["lineage"]) == {"gs"}
    recipe = RECIPES["realistic"]
    assert parameters["duration"].between(*recipe.note_seconds).all()
    assert parameters["velocity"].between(round(127 * recipe.volume[0]), 127).all()
    assert parameters["detune_cents"].between(*recipe.detune_cents).all()
    rooms = parameters[parameters["room_rt60"] > 0]
    assert 0 < len(rooms) < len(parameters) and rooms["room_rt60"].between(*recipe.room_rt60).all()
    assert set(parameters["codec"]) <= {"none", "mp3"} and set(parameters["noise_color"]) <= {"white", "pink", "brown"}
    # The level is what the recipe set, within the noise and codec added after it.
    np.testing.assert_allclose(parameters["peak_dbfs"], parameters["level_dbfs"], atol=1.5)
    # Every variation value can be read back into a valid Variation.
    for row in parameters.to_dict("records"):
        Variation.from_columns(row)


def test_variation_is_deterministic_for_any_jobs(tmp_path, varied_dataset):
    two = make_dataset(tmp_path / "j2", count=24, seed=5, jobs=2, soundfonts=SMALL_FONTS, variation="realistic")
    assert filecmp.cmp(varied_dataset / "parameters.csv", two / "parameters.csv", shallow=False)
    names = sorted(p.name for p in (two / "audio").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(varied_dataset / "audio", two / "audio", names, shallow=False)
    assert len(match) == 24 and not mismatch and not errors


def test_switching_one_stage_off_leaves_every_other_value_as_it_was(tmp_path, varied_dataset):
    dry_rooms = make_dataset(tmp_path / "no-room", count=24, seed=5, soundfonts=SMALL_FONTS,
                             variation="realistic", vary=["room_probability=0"])
    before = pd.read_csv(varied_dataset / "parameters.csv")
    after = pd.read_csv(dry_rooms / "parameters.csv")
    assert (after["room_rt60"] == 0).all() and (before["room_rt60"] > 0).any()
    same = [c for c in before.columns if not c.startswith(("room_", "mic_", "peak_dbfs"))]
    pd.testing.assert_frame_equal(before[same], after[same])


def test_every_dataset_clip_renders_again_from_its_row(tmp_path, varied_dataset):
    """Each clip from its row alone, though the generator rendered it after others on the same synth."""
    parameters = pd.read_csv(varied_dataset / "parameters.csv")
    assert ((parameters["room_rt60"] > 0) & parameters["noise_db"].notna()).any()
    for _, row in parameters.iterrows():
        argv = ["--instrument", str(row.instrument_id), "--pitch", str(row.midi_number), "--velocity",
                str(row.velocity), "--soundfont", row.soundfont, "--seed", "5", "--sample-id", str(row.sample_id),
                "-o", str(tmp_path / "again.flac")]
        for column, value in Variation.from_columns(row.to_dict()).columns().items():
            option = "--note-seconds" if column == "duration" else "--" + column.replace("_", "-")
            if not (isinstance(value, float) and math.isnan(value)):
                argv += [option, repr(value) if isinstance(value, float) else str(value)]
        assert render_note.main(argv) == 0
        again, _ = sf.read(tmp_path / "again.flac", dtype="int16")
        original, _ = sf.read(varied_dataset / row.audio_file, dtype="int16")
        np.testing.assert_array_equal(again, original, err_msg=f"clip {row.sample_id} ({row.soundfont})")


# ---------------------------------------------------------------------------
# What each stage does, on known signals


def _sine(frequency=440.0, seconds=1.0, amplitude=0.1):
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _band_level_db(audio, low, high):
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequency = np.fft.rfftfreq(len(audio), 1 / RATE)
    return 10 * np.log10(spectrum[(frequency >= low) & (frequency < high)].sum() + 1e-30)


def test_level_sets_the_peak_and_noise_sits_at_its_level_below_it():
    variation = Variation(level_dbfs=-20.0, noise_db=-40.0, noise_color="white")
    out = apply_recording_chain(np.zeros(RATE, np.float32) + _sine(), variation, RATE, np.random.default_rng(0))
    clean = apply_recording_chain(_sine(), Variation(level_dbfs=-20.0), RATE, np.random.default_rng(0))
    assert 20 * np.log10(np.abs(clean).max()) == pytest.approx(-20.0, abs=0.01)
    noise_rms = np.sqrt(np.mean((out - clean) ** 2))
    assert 20 * np.log10(noise_rms) == pytest.approx(-60.0, abs=0.5)


def test_noise_colours_tilt_the_spectrum():
    tilts = {}
    for colour in ("white", "pink", "brown"):
        # A 100 Hz tone sets the peak (the noise's reference) and leaves both bands alone.
        out = apply_recording_chain(_sine(100.0, 2.0), Variation(level_dbfs=-20.0, noise_db=-20.0,
                                    noise_color=colour), RATE, np.random.default_rng(1))
        # Level per octave, 500-1000 Hz against 8-16 kHz (16 times the bandwidth).
        tilts[colour] = _band_level_db(out, 8000, 16000) - _band_level_db(out, 500, 1000)
    assert tilts["white"] == pytest.approx(12.0, abs=1.0)   # power per Hz flat: 16x the bandwidth
    assert tilts["pink"] == pytest.approx(0.0, abs=1.0)     # equal power per octave
    assert tilts["brown"] == pytest.approx(-12.0, abs=1.0)  # 3 dB less per octave


def test_hum_adds_the_mains_frequency_and_its_harmonics():
    out = apply_recording_chain(_sine(3000.0), Variation(level_dbfs=-20.0, hum_db=-30.0, hum_hz=60.0), RATE,
                                np.random.default_rng(2))
    assert _band_level_db(out, 55, 65) - _band_level_db(out, 70, 110) > 40
    assert _band_level_db(out, 175, 185) - _band_level_db(out, 190, 230) > 30  # the third harmonic
    # At the level parameters.csv records (hum_db under the peak), and the same hum whether noise is on or off.
    clean = apply_recording_chain(_sine(3000.0), Variation(level_dbfs=-20.0), RATE, np.random.default_rng(2))
    assert 20 * np.log10(np.sqrt(np.mean((out - clean) ** 2))) == pytest.approx(-50.0, abs=0.5)
    noisy = Variation(level_dbfs=-20.0, noise_db=-40.0, noise_color="white")
    with_noise = apply_recording_chain(_sine(3000.0), noisy, RATE, np.random.default_rng(2))
    both = apply_recording_chain(_sine(3000.0), dataclasses.replace(noisy, hum_db=-30.0, hum_hz=60.0), RATE,
                                 np.random.default_rng(2))
    np.testing.assert_allclose(both - with_noise, out - clean, atol=1e-6)


def test_filters_shape_the_spectrum():
    signal = _sine(100.0) + _sine(1000.0) + _sine(12000.0)
    out = apply_recording_chain(signal, Variation(eq_highpass_hz=400.0, eq_lowpass_hz=4000.0), RATE,
                                np.random.default_rng(0))
    assert _band_level_db(out, 950, 1050) - _band_level_db(signal, 950, 1050) == pytest.approx(0, abs=1.0)
    # First-order filters (6 dB per octave, a microphone's gentle roll-off): two octaves and 1.6 octaves away.
    assert _band_level_db(out, 90, 110) - _band_level_db(signal, 90, 110) < -10
    assert _band_level_db(out, 11900, 12100) - _band_level_db(signal, 11900, 12100) < -8


def test_a_room_adds_a_tail_that_grows_with_its_reverberation_time():
    click = np.zeros(RATE, np.float32)
    click[0] = 0.5
    tails = []
    for rt60 in (0.2, 0.8):
        out = apply_recording_chain(click, Variation(room_rt60=rt60, room_size_m=8.0, mic_distance_m=2.0), RATE,
                                    np.random.default_rng(0))
        tails.append(_band_level_db(out[int(0.15 * RATE):int(0.4 * RATE)], 0, RATE / 2)
                     - _band_level_db(out[:int(0.15 * RATE)], 0, RATE / 2))
        assert np.argmax(np.abs(out)) < 0.005 * RATE  # the direct path stays at the start
    assert tails[0] < tails[1] - 10


def test_mp3_cuts_the_top_octave_at_low_quality():
    signal = _sine(1000.0) + _sine(18000.0, amplitude=0.05)
    out = apply_recording_chain(signal, Variation(codec="mp3", codec_quality=9), RATE, np.random.default_rng(0))
    assert _band_level_db(out, 17900, 18100) < _band_level_db(signal, 17900, 18100) - 20
    assert _band_level_db(out, 950, 1050) == pytest.approx(_band_level_db(signal, 950, 1050), abs=1.0)


def _f0(audio):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 16 * len(audio)))
    return np.fft.rfftfreq(16 * len(audio), 1 / RATE)[np.argmax(spectrum)]


@pytest.fixture(scope="module")
def flute():
    renderer = Renderer(soundfonts.resolve_soundfonts(["TimGM6mb"])[0].path)
    yield renderer
    renderer.close()


def _render(renderer, variation, pitch=69, program=73):
    events = note_events(program=program, pitch=pitch, velocity=100, variation=variation, sample_rate=RATE,
                         clip_seconds=1.0)
    return renderer.render_events(events, RATE)


def test_detune_vibrato_and_brightness_reach_the_sound(flute):
    plain = _render(flute, Variation())
    assert _f0(plain[4410:]) == pytest.approx(440.0, abs=3.0)  # the font's own tuning is a few cents off
    sharp = _render(flute, Variation(detune_cents=40.0))
    assert 1200 * np.log2(_f0(sharp[4410:]) / _f0(plain[4410:])) == pytest.approx(40.0, abs=3.0)
    vibrato = _render(flute, Variation(vibrato_cents=40.0, vibrato_hz=5.0))
    pitches = [_f0(vibrato[start:start + 2205]) for start in range(4410, 39690, 2205)]  # every 50 ms
    assert max(pitches) / min(pitches) > 2 ** (50 / 1200)
    bright = _render(flute, Variation(), pitch=60, program=61)  # brass: rich in high harmonics
    dark = _render(flute, Variation(brightness_cents=-2400.0), pitch=60, program=61)

    def centroid(audio):
        spectrum = np.abs(np.fft.rfft(audio))
        return (spectrum * np.fft.rfftfreq(len(audio), 1 / RATE)).sum() / spectrum.sum()

    assert centroid(dark) < 0.8 * centroid(bright)


@pytest.mark.parametrize("font, tolerance", [
    ("TimGM6mb", 0),
    # Ours bends at the exact sample of each pitch-wheel event, and a MIDI file's event times, summed
    # from deltas in seconds, may land one sample off: a few 16-bit steps.
    ("additive", 8),
])
def test_the_midi_file_holds_the_expression(tmp_path, font, tolerance):
    audio_path, midi_path = tmp_path / "note.wav", tmp_path / "note.mid"
    bank = "9" if font == "additive" else "0"  # one of our synthesiser's instruments; the GM bank of a SoundFont
    assert render_note.main(["--instrument", "flute", "--pitch", "A4", "--soundfont", font, "--bank", bank,
                             "--vibrato-cents", "30", "--vibrato-hz", "6", "--detune-cents", "-20",
                             "--brightness-cents", "-1200", "--note-seconds", "0.8", "-o", str(audio_path)]) == 0
    again = tmp_path / "again.wav"
    assert fluidsynth_wrapper.main(["-s", font, str(midi_path), str(again)]) == 0
    rendered, _ = sf.read(audio_path, dtype="int16")
    from_midi, _ = sf.read(again, dtype="int16")
    assert np.abs(from_midi[:len(rendered)].astype(int) - rendered).max() <= tolerance
    assert np.abs(rendered).max() > 1000


def test_a_clean_variation_gives_the_seeds_three_events():
    events = note_events(program=40, pitch=60, velocity=90, variation=Variation(), sample_rate=RATE,
                         clip_seconds=2.0)
    assert [(e.sample, e.kind) for e in events] == [(0, "program"), (0, "note_on"), (RATE, "note_off")]


def test_recipes_draw_within_their_ranges_and_overrides_are_checked():
    recipe = get_recipe("realistic", ["noise_db=-60:-50", "codec_probability=1"])
    draws = [recipe.draw(np.random.default_rng([1, i, 1])) for i in range(200)]
    noisy = [d.noise_db for d in draws if not math.isnan(d.noise_db)]
    assert noisy and all(-60 <= value <= -50 for value in noisy)
    assert all(d.codec == "mp3" for d in draws)
    assert recipe.name == "realistic+codec_probability,noise_db"
    assert all(RECIPES["none"].draw(np.random.default_rng(i)).is_clean for i in range(5))
    with pytest.raises(UserError, match="vibrato_hz range"):
        get_recipe("realistic", ["vibrato_hz=9:3"])


@pytest.mark.parametrize("text, number", [("C4", 60), ("A0", 21), ("c#4", 61), ("Bb2", 46), ("108", 108)])
def test_pitch_names(text, number):
    assert pitch_number(text) == number


@pytest.mark.parametrize("argv, message", [
    (["--instrument", "kazoo"], "unknown instrument 'kazoo'"),
    (["--instrument", "violin", "--pitch", "H2"], "bad pitch 'H2'"),
    (["--instrument", "violin", "--velocity", "300"], "--velocity must be within 1..127"),
    (["--instrument", "violin", "--room-rt60", "0.5"], "a room (room_rt60 > 0) needs"),
    (["--instrument", "violin", "--noise-db", "3"], "noise_db must be within"),
    (["--instrument", "violin", "--room-rt60", "0.5", "--room-size-m", "0.5", "--mic-distance-m", "1"],
     "room_size_m of at least 2 m"),  # was pyroomacoustics' traceback: the microphone outside the room
    (["--instrument", "violin", "--volume", "0.001"], "--volume must be within 0.004..1"),  # named --velocity
    (["--instrument", "violin", "--soundfont", "Nope"], "unknown SoundFont 'Nope'"),
    (["--instrument", "violin", "--velocity", "0"], "--velocity must be within 1..127"),  # a silent note
    (["--instrument", "violin", "--bank", "16384", "--soundfont", "additive"], "--bank must be within 0..16383"),
    (["--instrument", "violin", "--midi", "take.wav"], "--midi is the MIDI file (take.wav): name it .mid"),  # a
    # recording there was overwritten with MIDI
])
def test_render_note_bad_input(tmp_path, capsys, argv, message):
    assert render_note.main([*argv, "-o", str(tmp_path / "x.flac")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_clipping_is_said_not_silent(tmp_path, capsys):
    """Noise at the note's own level on a note at -1 dBFS peaks past full scale: the files were clipped, silently."""
    loud = ["--instrument", "violin", "--level-dbfs", "-1", "--noise-db", "0"]
    assert render_note.main([*loud, "-o", str(tmp_path / "loud.wav")]) == 0
    out, err = capsys.readouterr()
    assert "samples past full scale were clipped" in err and "peak 0.0 dBFS" in out
    assert render_note.main([*loud[:2], "-o", str(tmp_path / "quiet.wav")]) == 0
    assert capsys.readouterr().err == ""
    make_dataset(tmp_path / "dataset", count=3, vary=["level_probability=1", "level_dbfs=-1:-1",
                                                      "noise_probability=1", "noise_db=0:0"])
    assert "3 of 3 clips went past full scale and were clipped" in capsys.readouterr().err
    # A note set to exactly full scale (level_dbfs 0, allowed), not past it: no warning, and no column added.
    quiet = make_dataset(tmp_path / "full-scale", count=3, vary=["level_probability=1", "level_dbfs=0:0"])
    assert "clipped" not in capsys.readouterr().err
    assert "_clipped" not in pd.read_csv(quiet / "parameters.csv").columns


def test_a_note_the_font_leaves_silent_is_said_so_on_stderr(tmp_path, capsys):
    """G9 is above FluidR3_GM's violin: the file is silent; that was a word on stdout only."""
    assert render_note.main(["--instrument", "violin", "--pitch", "G9", "--soundfont", "FluidR3_GM",
                             "-o", str(tmp_path / "dry.wav")]) == 0
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert err.strip().endswith("warning: FluidR3_GM has no sound for violin at G9: the note is silent")
    assert "silent" in out and not np.any(sf.read(tmp_path / "dry.wav")[0])
    assert render_note.main(["--instrument", "violin", "--pitch", "G4", "--soundfont", "FluidR3_GM",
                             "-o", str(tmp_path / "g4.wav")]) == 0
    assert capsys.readouterr().err == ""
    # A note with sound, but under the level a dataset redraws a note at: said too, by the generator's measure.
    assert render_note.main(["--instrument", "violin", "--pitch", "G4", "--soundfont", "FluidR3_GM", "--velocity",
                             "1", "-o", str(tmp_path / "soft.wav")]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "under the -60 dBFS a dataset counts as silent" in err
    assert np.any(sf.read(tmp_path / "soft.wav")[0])


def test_a_fixed_codec_quality_is_the_one_drawn():
    """``--vary codec_quality=7``: a range of one value, its top included (it crashed: "low >= high")."""
    recipe = get_recipe("realistic", ["codec_probability=1", "codec_quality=7"])
    assert {recipe.draw(np.random.default_rng(i)).codec_quality for i in range(20)} == {7}


def _band_db(audio: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    frequency = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return 10 * np.log10(power[(frequency >= low) & (frequency < high)].sum())


def test_the_recorded_high_shelf_is_the_one_applied():
    """parameters.csv's eq_high_shelf_db is the gain the treble gets (and the bass keeps its level)."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = (0.1 * np.sin(2 * np.pi * 100 * t) + 0.1 * np.sin(2 * np.pi * 10_000 * t)).astype(np.float32)
    y = apply_recording_chain(x, Variation(eq_high_shelf_db=12.0), SAMPLE_RATE, np.random.default_rng(0))
    assert _band_db(y, 9900, 10100) - _band_db(x, 9900, 10100) == pytest.approx(12, abs=1.5)
    assert _band_db(y, 90, 110) - _band_db(x, 90, 110) == pytest.approx(0, abs=1)


def test_a_nearer_microphone_hears_more_of_the_note_than_of_the_room():
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[0] = 0.5
    ratios = []
    for distance in (0.5, 4.0):
        out = apply_recording_chain(click, Variation(room_rt60=0.8, room_size_m=12.0, mic_distance_m=distance),
                                    SAMPLE_RATE, np.random.default_rng(0)).astype(np.float64) ** 2
        ratios.append(10 * np.log10(out[:100].sum() / out[100:].sum()))  # direct to reverberant, dB
    assert ratios[0] > ratios[1] + 6


def test_a_setting_beside_its_partner_at_zero_is_taken(tmp_path):
    """A row of --vary eq_peak_db=0 holds a drawn eq_peak_hz beside a gain of 0: its values must render it again."""
    assert render_note.main(["--instrument", "1", "--eq-peak-hz", "2345", "--eq-peak-db", "0",
                             "-o", str(tmp_path / "a.wav")]) == 0
    assert render_note.main(["--instrument", "1", "-o", str(tmp_path / "b.wav")]) == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def test_a_font_named_twice_is_refused():
    """Clip i plays font i mod n: a font named twice was dropped in silence (a user may have meant it twice)."""
    with pytest.raises(UserError, match="SoundFont TimGM6mb is named twice: name each font once"):
        soundfonts.resolve_soundfonts(["TimGM6mb", "timgm6mb"])
    assert [font.name for font in soundfonts.resolve_soundfonts(["TimGM6mb", "sf_GMbank"])] == ["TimGM6mb", "sf_GMbank"]


def test_the_seed_draws_the_variation(tmp_path):
    """Another --seed, other variation settings (not only other notes)."""
    a = pd.read_csv(make_dataset(tmp_path / "a", count=6, seed=1, variation="realistic") / "parameters.csv")
    b = pd.read_csv(make_dataset(tmp_path / "b", count=6, seed=2, variation="realistic") / "parameters.csv")
    assert not a["detune_cents"].equals(b["detune_cents"])

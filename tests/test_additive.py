"""Our own synthesiser: every archetype plays, and each keeps the acoustics of its family."""

from __future__ import annotations

import numpy as np
import pytest

from instrument_classifier.additive import AdditiveRenderer
from instrument_classifier.instruments import load_instruments, select_instruments
from instrument_classifier.timbres import ARCHETYPES, draw_timbre
from instrument_classifier.variation import Variation, note_events

RATE = 44_100


@pytest.fixture(scope="module")
def synth():
    return AdditiveRenderer(RATE)


def play(synth, program, *, bank=1, pitch=57, velocity=100, seconds=1.5, variation=None):
    events = note_events(program=program, pitch=pitch, velocity=velocity, bank=bank, sample_rate=RATE,
                         variation=variation or Variation(note_seconds=seconds), clip_seconds=2.0)
    return synth.render_events(events, 2 * RATE)


def spectrum(audio):
    magnitude = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / RATE), magnitude


def partial_db(audio, frequency, width=8.0):
    f, magnitude = spectrum(audio)
    return 20 * np.log10(magnitude[np.abs(f - frequency) < width].max() + 1e-12)


def test_every_program_of_the_default_families_plays(synth):
    programs = select_instruments(load_instruments())["midi_program"]
    assert set(programs) <= set(ARCHETYPES)
    for program in programs:
        audio = play(synth, int(program), bank=int(program) * 7)
        assert np.isfinite(audio).all() and 0.005 < np.abs(audio).max() <= 1.0, program


def test_a_bank_is_one_instrument_and_banks_differ(synth):
    first, again, other = play(synth, 40, bank=3), play(synth, 40, bank=3), play(synth, 40, bank=4)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    assert draw_timbre(40, 3) == draw_timbre(40, 3) != draw_timbre(40, 4)


def energy(audio, start, stop):
    return float(np.sum(audio[int(start * RATE):int(stop * RATE)] ** 2))


def test_a_note_sounds_as_long_and_as_loud_as_it_is_played(synth):
    """The note length and velocity of a clip's row (its MIDI file) reach our synthesiser's notes."""
    for program in (40, 56, 73):  # violin, trumpet, flute: sustained until released
        short, long = play(synth, program, seconds=0.3), play(synth, program, seconds=1.5)
        assert energy(short, 0.4, 0.8) < 0.25 * energy(long, 0.4, 0.8), program  # released: 6 dB under, and more
        assert energy(short, 1.0, 1.4) < 0.01 * energy(long, 1.0, 1.4), program  # 20 dB under
        quiet, loud = play(synth, program, velocity=40), play(synth, program, velocity=127)
        assert np.abs(quiet).max() < 0.5 * np.abs(loud).max(), program


@pytest.mark.parametrize("bank", [1, 2, 3])
def test_struck_and_plucked_strings_decay_where_organs_and_winds_hold(synth, bank):
    for program in (0, 24, 46):     # acoustic grand piano, nylon guitar, harp
        audio = play(synth, program, bank=bank, seconds=1.9)
        assert energy(audio, 1.2, 1.5) < 0.3 * energy(audio, 0.1, 0.4), program
    for program in (16, 19, 68, 73):  # drawbar and church organ, oboe, flute
        audio = play(synth, program, bank=bank, seconds=1.9)
        assert energy(audio, 1.2, 1.5) > 0.4 * energy(audio, 0.3, 0.6), program


def envelope_throb(audio, low=7.0, high=17.0):
    """The envelope's strongest modulation between ``low`` and ``high`` Hz over 0.5-1.5 s, as a fraction of its mean."""
    frames = audio[int(0.5 * RATE):int(1.5 * RATE)].reshape(-1, 441)  # 10 ms frames
    envelope = np.sqrt((frames ** 2).mean(axis=1))
    modulation = 2 * np.abs(np.fft.rfft(envelope - envelope.mean())) / len(envelope)
    frequency = np.fft.rfftfreq(len(envelope), 441 / RATE)
    return modulation[(frequency >= low) & (frequency <= high)].max() / envelope.mean()


@pytest.mark.parametrize("bank", [1, 2, 3, 4])
def test_muted_guitars_die_at_once_and_tremolo_strings_throb(synth, bank):
    """Two articulations GM names by program: palm-muted strings (28) stop ringing within a few tenths of a
    second where open ones (24, 25) ring on; tremolo strings (44) throb at 8-16 Hz where bowed ones hold."""
    def fall_db(program):
        audio = play(synth, program, bank=bank, seconds=1.9)
        return 10 * np.log10(energy(audio, 0.6, 0.9) / energy(audio, 0.0, 0.3))

    assert fall_db(28) < -30 and min(fall_db(24), fall_db(25)) > -25
    assert envelope_throb(play(synth, 44, bank=bank, seconds=1.9)) > 0.2
    for program in (40, 41, 48):  # violin, viola, string ensemble
        assert envelope_throb(play(synth, program, bank=bank, seconds=1.9)) < 0.1, program


@pytest.mark.parametrize("bank", [1, 2, 3, 4])
def test_a_clarinets_even_harmonics_are_weak(synth, bank):
    audio = play(synth, 71, bank=bank, pitch=50)  # D3, 146.8 Hz
    f0 = 440 * 2 ** ((50 - 69) / 12)
    odd = np.mean([partial_db(audio, k * f0) for k in (1, 3, 5)])
    even = np.mean([partial_db(audio, k * f0) for k in (2, 4, 6)])
    assert even < odd - 8


@pytest.mark.parametrize("bank", [1, 2, 3, 4])
def test_brass_and_reeds_fall_steeply_above_their_cutoff(synth, bank):
    # A trombone's (57) cutoff lies at 500-1200 Hz, a bassoon's (70) at 350-700 Hz: at A2 (110 Hz) the
    # partials near 2.5 kHz are far under those near 440 Hz, where a plain -6 dB/octave slope would
    # leave them ~15 dB under.
    f0 = 110.0
    for program in (57, 70):
        audio = play(synth, program, bank=bank, pitch=45)
        low = max(partial_db(audio, k * f0) for k in (3, 4, 5))
        high = max(partial_db(audio, k * f0) for k in (22, 23, 24))
        assert high < low - 25, program


@pytest.mark.parametrize("bank", [1, 2, 3, 4])
def test_a_violins_body_radiates_little_under_its_air_resonance(synth, bank):
    # G3 (196 Hz), the violin's lowest string: the body's lowest resonance (250-450 Hz here, ~280 Hz in
    # real violins) leaves the fundamental weaker than the partials above it.
    f0 = 440 * 2 ** ((55 - 69) / 12)
    audio = play(synth, 40, bank=bank, pitch=55)
    timbre = draw_timbre(40, bank)
    assert timbre.highpass_hz > f0 and timbre.highpass_db >= 12
    assert partial_db(audio, f0) < max(partial_db(audio, k * f0) for k in (2, 3, 4)) - 3


def test_piano_partials_are_stretched(synth):
    audio = play(synth, 0, bank=5, pitch=45, seconds=1.9)  # A2, 110 Hz
    f, magnitude = spectrum(audio[: RATE])
    near = (f > 1080) & (f < 1160)                       # the 10th partial, sharp of 1100 Hz
    assert f[near][np.argmax(magnitude[near])] > 1101
    timbre = draw_timbre(0, 5)
    assert timbre.archetype == "struck" and timbre.inharmonicity > 0


def test_pitch_wheel_and_brightness_reach_the_partials(synth):
    plain = play(synth, 56, bank=2)
    sharp = play(synth, 56, bank=2, variation=Variation(note_seconds=1.5, detune_cents=50.0))
    f, a = spectrum(plain[: RATE])
    _, b = spectrum(sharp[: RATE])
    band = (f > 180) & (f < 260)
    ratio = f[band][np.argmax(b[band])] / f[band][np.argmax(a[band])]
    assert 1200 * np.log2(ratio) == pytest.approx(50, abs=8)
    # Brightness -4800 cents: a low-pass at 1250 Hz, 12 dB per octave; the 16th partial is 1.5 octaves above.
    dark = play(synth, 56, bank=2, variation=Variation(note_seconds=1.5, brightness_cents=-4800.0))

    def tilt(audio):
        return partial_db(audio, 16 * 220) - partial_db(audio, 220)

    assert tilt(dark) == pytest.approx(tilt(plain) - 18, abs=3)

"""Our own synthesiser: textbook acoustics of each GM family, with every parameter drawn at random.

Two sample banks (the fluid and gs lineages) are two recordings of each
instrument; a network trained on them learns those recordings.  This
synthesiser makes a new instrument for every (program, bank): each GM
program follows one *archetype* (a struck, plucked or bowed string, a lip
reed, a cylindrical or conical reed, a flue pipe, a free reed, an organ
stop, ...), whose parameters are drawn from broad ranges seeded by
``(program, bank)`` (:mod:`timbres`).  What stays is what the acoustics of
the family fix: a piano's partials decay and stretch, a clarinet's even
harmonics are weak, a flute is nearly sinusoidal and breathy, an organ
speaks at once and holds.  Trained beside the SoundFonts, it shows the
network many instruments per family instead of two recordings.

:class:`AdditiveRenderer` has the interface of
:class:`~instrument_classifier.synthesis.Renderer` (``render_events``), and
reads the same MIDI events: the bank select (controllers 0 and 32) chooses
the random instrument, the pitch wheel bends every partial, and the SF2
filter NRPN (brightness) tilts the spectrum as FluidSynth's low-pass would.
So the MIDI file of a clip renders it again exactly
(``fluidsynth_wrapper.py -s additive``).  It is a font of the catalogue
(``data/soundfonts.csv``, name ``additive``, lineage ``own``).

Partials are summed directly (at most :data:`MAX_PARTIALS`, below
:data:`MAX_PARTIAL_HZ`), in float32; about 20 ms a clip.
"""

from __future__ import annotations

import numpy as np

from .midi_files import NoteEvent, read_midi_events
from .timbres import Timbre, draw_timbre

MAX_PARTIALS = 64
# Partials more than this far below the loudest are left out.
PARTIAL_RANGE_DB = 60.0
MAX_PARTIAL_HZ = 18_000.0
# Every timbre's noise level is this much lower than its range says (heard against the SoundFonts, the
# ranges' breath and bow noise filled the top of the chromagram more than any recorded instrument's).
NOISE_OFFSET_DB = -15.0
# Output level of a note at velocity 127 (FluidSynth's renders peak near -20 dBFS).
PEAK = 10 ** (-18 / 20)
# Banks of the synthesiser: each (program, bank) is another random instrument.
BANKS = 16384


def _partials(timbre: Timbre, f0: float) -> tuple[np.ndarray, np.ndarray]:
    """(ratio of each partial to f0, its level in dB) before velocity and time."""
    if timbre.partial_ratios:
        ratios = np.asarray(timbre.partial_ratios, dtype=np.float64)
        numbers = np.arange(1, len(ratios) + 1, dtype=np.float64)
    else:
        numbers = np.arange(1, MAX_PARTIALS + 1, dtype=np.float64)
        ratios = numbers * np.sqrt(1 + timbre.inharmonicity * numbers ** 2)
    frequency = ratios * f0
    level = timbre.slope_db * np.log2(ratios)
    if not timbre.partial_ratios:
        even = numbers % 2 == 0
        if timbre.extra.get("even_below_cutoff"):  # a clarinet's tone holes: odd partials lead only below the cutoff
            even &= frequency < timbre.rolloff_hz
        level += np.where(even, timbre.even_db, 0.0)
    if timbre.comb:
        level += 20 * np.log10(np.abs(np.sin(np.pi * numbers * timbre.comb)) + 1e-3)
    stops = timbre.extra.get("stops_db")
    if stops is not None and timbre.partial_ratios:
        level = level + np.asarray(stops[:len(ratios)])
    if timbre.extra.get("harmonics_only"):  # flageolet: the string touched at its middle, odd partials silent
        level += np.where(numbers % 2 == 1, -40.0, 0.0)
    if timbre.extra.get("weak_fundamental_db"):
        level[0] += timbre.extra["weak_fundamental_db"]
    level += timbre.rolloff_db * np.maximum(0.0, np.log2(frequency / timbre.rolloff_hz))
    if timbre.highpass_hz:
        level += timbre.highpass_db * np.minimum(0.0, np.log2(frequency / timbre.highpass_hz))
    for centre, width, gain in timbre.formants:
        level += gain / (1 + ((frequency - centre) / (width / 2)) ** 2)
    keep = frequency < MAX_PARTIAL_HZ
    return ratios[keep], level[keep]


class AdditiveRenderer:
    """Renders note events with :func:`draw_timbre` instruments; the Renderer interface, no SoundFont."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)

    def close(self) -> None:
        pass

    def __enter__(self) -> "AdditiveRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def render_midi(self, path, *, tail_seconds: float = 1.0) -> np.ndarray:
        """Render a whole MIDI file, plus ``tail_seconds`` for the release; float32 mono."""
        events, end = read_midi_events(path, self.sample_rate)
        return self.render_events(events, end + round(tail_seconds * self.sample_rate))

    def render_events(self, events: list[NoteEvent], n_samples: int) -> np.ndarray:
        """Render ``events`` (sorted by sample) into float32 [shape=(n_samples,)]; every note on its own."""
        program = [0] * 16
        bank = [0] * 16
        bend = [[(0, 0.0)] for _ in range(16)]         # per channel: (sample, cents) steps
        brightness = [0.0] * 16
        nrpn = [[0, 0] for _ in range(16)]
        data = [[0, 0] for _ in range(16)]
        sounding: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        notes = []
        for event in events:
            c = event.channel
            if event.kind == "program":
                program[c], bank[c] = event.data1, event.data2 if c != 9 else 128
            elif event.kind == "control":
                if event.data1 == 0:
                    bank[c] = event.data2 * 128 + bank[c] % 128
                elif event.data1 == 32:
                    bank[c] = bank[c] // 128 * 128 + event.data2
                elif event.data1 in (99, 98):
                    nrpn[c][event.data1 == 98] = event.data2
                elif event.data1 in (6, 38):
                    data[c][event.data1 == 38] = event.data2
                    if nrpn[c] == [120, 8]:  # the SF2 NRPN of the filter cutoff, 2 cents a step
                        brightness[c] = 2.0 * (data[c][0] * 128 + data[c][1] - 8192)
            elif event.kind == "pitchwheel":
                bend[c].append((event.sample, (event.data1 - 8192) / 8192 * 200.0))
            elif event.kind == "note_on":
                sounding[(c, event.data1)] = (event.sample, event.data2, program[c], bank[c])
            elif event.kind == "note_off" and (c, event.data1) in sounding:
                start, velocity, prog, bnk = sounding.pop((c, event.data1))
                notes.append((c, event.data1, velocity, prog, bnk, start, event.sample, brightness[c]))
        for (c, pitch), (start, velocity, prog, bnk) in sounding.items():
            notes.append((c, pitch, velocity, prog, bnk, start, n_samples, brightness[c]))
        out = np.zeros(n_samples, dtype=np.float32)
        for c, pitch, velocity, prog, bnk, start, stop, bright in notes:
            if c == 9 or start >= n_samples:
                continue  # no percussion kit here
            cents = np.zeros(n_samples - start, dtype=np.float64)
            for at, value in bend[c]:
                cents[max(0, at - start):] = value
            out[start:] += self.render_note(draw_timbre(prog, bnk % BANKS), pitch=pitch, velocity=velocity,
                                            note_samples=max(1, stop - start), n_samples=n_samples - start,
                                            bend_cents=cents, brightness_cents=bright,
                                            seed=(prog, bnk, pitch, velocity))
        return out

    def render_note(self, timbre: Timbre, *, pitch: int, velocity: int, note_samples: int, n_samples: int,
                    bend_cents: np.ndarray | None = None, brightness_cents: float = 0.0,
                    seed: tuple = (0,)) -> np.ndarray:
        """One note of ``timbre`` from sample 0, released after ``note_samples``; float32 [shape=(n_samples,)]."""
        rate = self.sample_rate
        rng = np.random.default_rng([*seed, 0xADD])
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        ratios, level = _partials(timbre, f0)
        loud = velocity / 127
        level = level + timbre.velocity_brightness * (loud - 0.8) * np.log2(ratios)
        if brightness_cents:  # as the SF2 low-pass at cutoff 20 kHz * 2^(cents / 1200): -12 dB per octave above it
            cutoff = 20000 * 2 ** (brightness_cents / 1200)
            level -= 12 * np.maximum(0.0, np.log2(ratios * f0 / cutoff))
        t = np.arange(n_samples, dtype=np.float64) / rate
        bend = bend_cents if bend_cents is not None else np.zeros(n_samples)
        vibrato = timbre.vibrato_cents * np.sin(2 * np.pi * timbre.vibrato_hz * t) * np.minimum(1.0, t / 0.3)
        phase_turns = np.cumsum(f0 * 2 ** ((bend + vibrato) / 1200)) / rate  # of the fundamental

        release_at = note_samples / rate
        attack = np.minimum(1.0, t / max(timbre.attack, 1e-4))
        after = np.maximum(0.0, t - release_at)
        release = np.exp(-6.9 * after / max(timbre.release, 1e-3))     # -60 dB after `release` s
        held = np.where(t < release_at, 1.0, 0.0)
        envelope = attack * 10 ** (timbre.sustain_slope * np.minimum(t, release_at) / 20)
        envelope *= held + (1 - held) * release
        if timbre.tremolo:
            envelope *= 1 - timbre.tremolo * 0.5 * (1 + np.sin(2 * np.pi * timbre.tremolo_hz * t))

        # Every partial at once, (partials, samples) in float32, and only until the release has died away.
        amplitudes = 10 ** (level / 20)
        keep = amplitudes >= 10 ** (-PARTIAL_RANGE_DB / 20) * amplitudes.max()
        ratios, amplitudes = ratios[keep], amplitudes[keep]
        active = min(n_samples, note_samples + round(1.2 * timbre.release * rate) + 1)
        t32 = t[:active].astype(np.float32)
        shape = np.empty((len(ratios), active), dtype=np.float32)
        work = np.empty_like(shape)
        shape[:] = envelope[:active].astype(np.float32)
        detunes = timbre.detune_cents or (0.0,)
        shape *= (amplitudes[:, None] / len(detunes)).astype(np.float32)
        if timbre.decay:
            t60 = timbre.decay * (f0 / 261.6) ** -0.3 / ratios ** timbre.decay_tilt          # (K,)
            np.outer((-6.9 / t60).astype(np.float32), t32, out=work)
            shape *= np.exp(work, out=work)
        if timbre.brighten_on_attack:  # brass: the upper partials come in later than the fundamental
            delay = timbre.attack * (1 + timbre.brighten_on_attack / 10 * np.log2(ratios))
            np.outer((1 / delay).astype(np.float32), t32, out=work)
            shape *= np.minimum(work, np.float32(1), out=work)
        if timbre.archetype == "tine":  # the tine's bell partial (the last) dies fast
            shape[-1] *= (10 ** (timbre.extra["bell_db"] / 20) * np.exp(-t32 / timbre.extra["bell_decay"]))
        out = np.zeros(n_samples, dtype=np.float32)
        turns32 = phase_turns[:active].astype(np.float32)
        for cents in detunes:
            # float32 phase: partial frequencies stay below 18 kHz, so at most 36,000 turns in 2 s, 0.002 turn off.
            np.outer((ratios * 2 ** (cents / 1200)).astype(np.float32), turns32, out=work)
            if timbre.random_phase:
                work += rng.uniform(0, 1, (len(ratios), 1)).astype(np.float32)
            work -= np.floor(work)
            work *= np.float32(2 * np.pi)
            np.sin(work, out=work)
            out[:active] += np.einsum("kn,kn->n", work, shape)
        # The rest on the sounding part only, so that a longer buffer renders the same note.
        out, t, envelope, phase_turns = out[:active].astype(np.float64), t[:active], envelope[:active], \
            phase_turns[:active]
        if timbre.extra.get("click"):  # percussive organ: a decaying 3rd harmonic
            out += 0.5 * envelope * np.exp(-t / 0.25) * np.sin(2 * np.pi * 3 * phase_turns)
        out /= max(1e-9, np.abs(out).max())
        if timbre.noise_db > -80:
            noise = _band_noise(rng, active, timbre.noise_hz, timbre.noise_q, rate)
            burst = 1 + timbre.chiff * 4 * np.exp(-t / 0.03)
            out += 10 ** ((timbre.noise_db + NOISE_OFFSET_DB) / 20) * noise * envelope * burst
        if timbre.drive:
            out = np.tanh(10 ** (timbre.drive / 20) * out) * envelope.clip(0, 1)
            out = _lowpass(out, timbre.extra["cabinet_hz"], rate)
        out *= PEAK * (0.2 + 0.8 * loud ** 1.5) / max(1e-9, np.abs(out).max())
        note = np.zeros(n_samples, dtype=np.float32)
        note[:active] = out
        return note


def _band_noise(rng: np.random.Generator, n: int, centre: float, q: float, rate: int) -> np.ndarray:
    """Gaussian noise shaped by a resonance at ``centre`` Hz (bandwidth centre / q), unit peak."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequency = np.fft.rfftfreq(n, 1 / rate)
    spectrum /= 1 + ((frequency - centre) / (centre / max(q, 0.05) / 2)) ** 2
    noise = np.fft.irfft(spectrum, n)
    return noise / max(1e-9, np.abs(noise).max())


def _lowpass(audio: np.ndarray, cutoff: float, rate: int) -> np.ndarray:
    """A loudspeaker cabinet's roll-off: -24 dB per octave above ``cutoff``, in the frequency domain."""
    spectrum = np.fft.rfft(audio)
    frequency = np.fft.rfftfreq(len(audio), 1 / rate)
    spectrum *= 1 / (1 + (frequency / cutoff) ** 4)
    return np.fft.irfft(spectrum, len(audio))

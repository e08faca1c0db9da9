"""The recording chain of a varied clip: stages 2-6 of :mod:`variation` on a rendered note.

Room (pyroomacoustics' image sources), microphone and channel colour
(pedalboard's filters), level, background noise and mains hum, and a lossy
codec (pedalboard's LAME), each as the clip's :class:`~variation.Variation`
says; the noise is drawn from the clip's own generator.
"""

from __future__ import annotations

import math

import numpy as np

from .cli import UserError
from .variation import NOISE_SLOPES, Variation

# Corner frequencies of the fixed shelf filters of the microphone colour.
LOW_SHELF_HZ, HIGH_SHELF_HZ = 250.0, 4000.0
# Coloured noise is shaped from this frequency up (below it, flat): brown noise would blow up at DC.
NOISE_SHAPE_FROM_HZ = 20.0
# Mains hum: the fundamental and harmonics up to this number (400 or 480 Hz).
HUM_HARMONICS = 8


def room_impulse_response(rt60: float, size_m: float, distance_m: float, sample_rate: int) -> np.ndarray:
    """A shoebox room's impulse response (pyroomacoustics, image sources), direct path at t = 0.

    The room is ``size_m`` long, 0.72 of that wide and 0.4 of it high (2.5 m
    at least); its walls absorb what gives ``rt60`` by Sabine's formula (the
    room is shrunk where even full absorption would ring longer).  The source
    stands 1.2 m high, the microphone ``distance_m`` away towards the far
    corner (closer where the room ends first).  Reflections up to order
    :data:`MAX_REFLECTION_ORDER`.  float32, peak-normalised.
    """
    import pyroomacoustics as pra

    size = float(size_m)
    while True:
        dims = np.array([size, 0.72 * size, max(2.5, 0.4 * size)])
        volume, surface = dims.prod(), 2 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
        if volume / surface < 0.9 * SABINE_LIMIT * rt60 or size <= 2.0:
            break
        size *= 0.9
    try:
        absorption, max_order = pra.inverse_sabine(rt60, dims)
    except ValueError:
        raise UserError(f"room_rt60 {rt60:g} s is too short for a room of {size_m:g} m") from None
    source = np.array([0.3 * dims[0], 0.35 * dims[1], 1.2])
    direction = (dims - 0.5 - source) / np.linalg.norm(dims - 0.5 - source)
    room_left = np.min((dims - 0.3 - source) / np.maximum(direction, 1e-9))
    microphone = source + direction * min(distance_m, room_left)
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(float(min(absorption, 1.0))),
                       max_order=int(min(max_order, MAX_REFLECTION_ORDER)))
    room.add_source(source)
    room.add_microphone(microphone)
    room.compute_rir()
    response = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(response)))
    response = response[max(0, direct - FRACTIONAL_DELAY_HALF):]
    return (response / np.abs(response).max()).astype(np.float32)


# Sabine: RT60 = 24 ln(10) V / (c S a), so with absorption a <= 1 a room can ring no shorter
# than 55.3 / 343 * V / S: V / S must stay below 343 / 55.3 * rt60.
SABINE_LIMIT = 343.0 / (24 * math.log(10))
# Image sources up to this order: ~10 ms a room; the tail of long rooms ends after ~0.7 s.
MAX_REFLECTION_ORDER = 20
# pyroomacoustics' fractional-delay filter reaches this many samples before the direct path.
FRACTIONAL_DELAY_HALF = 40


def coloured_noise(rng: np.random.Generator, n: int, colour: str, sample_rate: int) -> np.ndarray:
    """Gaussian noise with power ~ 1/f^slope above 20 Hz (white, pink, brown), unit RMS, float32.

    Shaped in the frequency domain from the clip's own generator (a library's
    noise would draw from a global random state, breaking per-clip seeds).
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequency = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), NOISE_SHAPE_FROM_HZ)
    spectrum *= frequency ** (-NOISE_SLOPES[colour] / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise ** 2)) or 1.0)).astype(np.float32)


def mains_hum(rng: np.random.Generator, n: int, frequency: float, sample_rate: int) -> np.ndarray:
    """Mains hum: harmonics 1 to :data:`HUM_HARMONICS` of ``frequency`` (the first is the fundamental) at 1/k
    amplitude, random phases, unit RMS."""
    turn = np.exp(1j * np.arange(n) * (2 * np.pi * frequency / sample_rate))  # e^{i w t}
    power = turn.copy()                                                       # e^{i k w t}
    hum = np.zeros(n)
    for k, phase in enumerate(rng.uniform(0, 2 * np.pi, HUM_HARMONICS), start=1):
        hum += (power * np.exp(1j * phase)).imag / k                         # sin(k w t + phase) / k
        power *= turn
    return (hum / np.sqrt(np.mean(hum ** 2))).astype(np.float32)


def apply_recording_chain(audio: np.ndarray, variation: Variation, sample_rate: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Stages 2-6 on a rendered note [shape=(n,)] -> float32 [shape=(n,)] (``rng`` draws the noise)."""
    import pedalboard
    import scipy.signal

    audio = np.asarray(audio, dtype=np.float32)
    n = len(audio)
    if variation.room_rt60 > 0:
        response = room_impulse_response(variation.room_rt60, variation.room_size_m, variation.mic_distance_m,
                                         sample_rate)
        audio = scipy.signal.oaconvolve(audio, response)[:n].astype(np.float32)
    filters = []
    if variation.eq_highpass_hz > 0:
        filters.append(pedalboard.HighpassFilter(variation.eq_highpass_hz))
    if variation.eq_lowpass_hz > 0:
        filters.append(pedalboard.LowpassFilter(min(variation.eq_lowpass_hz, 0.45 * sample_rate)))
    if variation.eq_low_shelf_db:
        filters.append(pedalboard.LowShelfFilter(LOW_SHELF_HZ, variation.eq_low_shelf_db, 0.707))
    if variation.eq_high_shelf_db:
        filters.append(pedalboard.HighShelfFilter(HIGH_SHELF_HZ, variation.eq_high_shelf_db, 0.707))
    if variation.eq_peak_db:
        filters.append(pedalboard.PeakFilter(min(variation.eq_peak_hz, 0.45 * sample_rate), variation.eq_peak_db, 1.0))
    if filters:
        audio = pedalboard.Pedalboard(filters)(audio, sample_rate)
    peak = float(np.abs(audio).max())
    if not math.isnan(variation.level_dbfs) and peak > 0:
        audio = audio * np.float32(10 ** (variation.level_dbfs / 20) / peak)
        peak = 10 ** (variation.level_dbfs / 20)
    # Noise and hum have a generator each, so that one stage never shifts the other's draws.
    noise_rng, hum_rng = rng.spawn(2)
    if not math.isnan(variation.noise_db):
        noise = coloured_noise(noise_rng, n, variation.noise_color, sample_rate)
        audio = audio + noise * np.float32(peak * 10 ** (variation.noise_db / 20))
    if not math.isnan(variation.hum_db):
        hum = mains_hum(hum_rng, n, variation.hum_hz, sample_rate)
        audio = audio + hum * np.float32(peak * 10 ** (variation.hum_db / 20))
    if variation.codec == "mp3":
        audio = pedalboard.MP3Compressor(vbr_quality=float(variation.codec_quality))(
            np.clip(audio, -1.0, 1.0), sample_rate)
    return np.asarray(audio, dtype=np.float32)

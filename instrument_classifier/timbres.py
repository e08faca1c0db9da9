"""The random instruments of our synthesiser: one archetype per GM program, its ranges drawn per bank.

Each GM program follows one *archetype* (a struck string, a plucked string,
a bowed string, a lip reed, a cylindrical or conical reed, a flue pipe, a
free reed, an organ stop, ...); :func:`draw_timbre` draws the archetype's
parameters (spectral slope, odd-harmonic weighting, formants, pluck or
hammer position, inharmonicity, attack, decay of each partial, breath or bow
noise, vibrato, tremolo, drive) from broad ranges seeded by ``(program,
bank)``, and gives the program its size (:data:`SIZES`).  What stays is what
the acoustics of the family fix.  :mod:`additive` renders a :class:`Timbre`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

@dataclass(frozen=True)
class Timbre:
    """One random instrument: everything that shapes its notes.

    Amplitude of partial k (1-based) at pitch f0: ``slope_db`` per octave of
    k, ``even_db`` on even k, ``formants`` (Hz, bandwidth Hz, gain dB) on the
    partial's frequency, ``comb`` (pluck or hammer position: |sin(pi k comb)|,
    0 = none), inharmonic ratio ``k sqrt(1 + B k^2)``.  Time: ``attack`` s,
    then either held (``decay`` = 0; ``sustain_slope`` dB/s) or free decay
    (``decay``: T60 of the fundamental in s, shorter by ``decay_tilt`` per
    octave of k); ``release`` s after the note-off.  Above ``rolloff_hz``
    the spectrum falls a further ``rolloff_db`` per octave (a radiation or
    body cut-off, every instrument has one; for winds and brass the steep
    fall above the cutoff frequency of their bore, :data:`SIZES`), and below
    ``highpass_hz`` it falls ``highpass_db`` per octave (a body or bell
    radiates little under its lowest resonance).  Noise: ``noise_db``
    relative to the partials, in a band around ``noise_hz`` (``noise_q``
    wide), ``chiff`` its extra burst at the onset.
    """

    archetype: str
    slope_db: float = -6.0
    even_db: float = 0.0
    formants: tuple[tuple[float, float, float], ...] = ()
    comb: float = 0.0
    inharmonicity: float = 0.0
    partial_ratios: tuple[float, ...] = ()
    attack: float = 0.01
    decay: float = 0.0
    decay_tilt: float = 0.0
    sustain_slope: float = 0.0
    release: float = 0.1
    brighten_on_attack: float = 0.0
    noise_db: float = -60.0
    noise_hz: float = 2000.0
    noise_q: float = 1.0
    chiff: float = 0.0
    vibrato_cents: float = 0.0
    vibrato_hz: float = 5.0
    tremolo: float = 0.0
    tremolo_hz: float = 6.0
    detune_cents: tuple[float, ...] = ()
    drive: float = 0.0
    velocity_brightness: float = 6.0
    rolloff_hz: float = 20000.0
    rolloff_db: float = 0.0
    highpass_hz: float = 0.0
    highpass_db: float = 0.0
    random_phase: bool = True
    extra: dict = field(default_factory=dict, compare=False)


# GM program (0-based) -> archetype, for the families the project classifies;
# every other program is played by "generic".
ARCHETYPES = {
    **dict.fromkeys((0, 1, 2, 3), "struck"), **dict.fromkeys((4, 5), "tine"), 6: "harpsichord", 7: "clavinet",
    **dict.fromkeys((16, 18), "drawbar"), 17: "percussive_organ", 19: "pipe_organ",
    **dict.fromkeys((20, 21, 23), "free_reed"), 22: "harmonica",
    **dict.fromkeys((24, 25, 26, 27), "plucked"), 28: "muted_pluck", **dict.fromkeys((29, 30), "distorted"),
    31: "guitar_harmonics",
    **dict.fromkeys((40, 41, 42, 43), "bowed"), 44: "tremolo_bowed", 45: "pizzicato", 46: "harp", 47: "membrane",
    **dict.fromkeys((56, 57, 58, 60, 61), "lip_reed"), 59: "muted_brass", **dict.fromkeys((62, 63), "synth_brass"),
    **dict.fromkeys((64, 65, 66, 67), "conical_reed"), **dict.fromkeys((68, 69, 70), "double_reed"),
    71: "cylindrical_reed",
    **dict.fromkeys((72, 73, 74), "flue"), **dict.fromkeys((75, 76, 77), "breathy_flue"),
    **dict.fromkeys((78, 79), "vessel"),
}


# Program -> its size, in the frequencies where its radiation changes: (lowest body or bell resonance,
# Hz range), (how steeply the partials fall below it, dB per octave), (cutoff, Hz range: above it they
# fall steeply), (that fall, dB per octave range).  Measured acoustics (Benade, "Fundamentals of Musical
# Acoustics", ch. 21-22; Fletcher & Rossing, "The Physics of Musical Instruments"): a trombone's
# spectrum peaks near 500-1000 Hz and falls ~15-25 dB per octave above; a violin's fundamental is weak
# under its ~280 Hz air resonance; a clarinet's odd partials dominate only below its ~1.5 kHz
# tone-hole cutoff.  Programs not listed get a gentle random roll-off only.
_STRINGS_FALL, _WIND_FALL = (-18.0, -6.0), (-30.0, -12.0)
# How steeply the radiation falls under the lowest resonance, dB per octave: a small bowed body
# (a monopole source below its first modes) more steeply than a bell or a tone-hole lattice.
_BODY_RISE, _BELL_RISE = (12.0, 24.0), (6.0, 18.0)
SIZES = {
    40: ((250, 450), _BODY_RISE, (3000, 6000), _STRINGS_FALL),  # Violin
    41: ((180, 350), _BODY_RISE, (2500, 5000), _STRINGS_FALL),  # Viola
    42: ((70, 130), _BODY_RISE, (1500, 3500), _STRINGS_FALL),  # Cello
    43: ((40, 80), _BODY_RISE, (800, 2000), _STRINGS_FALL),  # Contrabass
    44: ((80, 300), _BODY_RISE, (2000, 5000), _STRINGS_FALL),  # Tremolo Strings
    56: ((150, 350), _BELL_RISE, (1200, 3000), (-24.0, -8.0)),  # Trumpet
    57: ((150, 300), _BELL_RISE, (500, 1200), (-24.0, -8.0)),  # Trombone
    58: ((40, 100), _BELL_RISE, (200, 600), (-24.0, -8.0)),  # Tuba
    59: ((300, 800), _BELL_RISE, (1500, 4000), (-24.0, -8.0)),  # Muted Trumpet
    60: ((80, 200), _BELL_RISE, (400, 1200), (-24.0, -8.0)),  # French Horn
    61: ((100, 250), _BELL_RISE, (600, 1800), (-24.0, -8.0)),  # Brass Section
    62: ((50, 300), _BELL_RISE, (500, 4000), (-24.0, -6.0)),  # Synth Brass 1
    63: ((50, 300), _BELL_RISE, (500, 4000), (-24.0, -6.0)),  # Synth Brass 2
    64: ((150, 350), _BELL_RISE, (1000, 2500), _WIND_FALL),  # Soprano Sax
    65: ((100, 250), _BELL_RISE, (600, 1400), _WIND_FALL),  # Alto Sax
    66: ((70, 180), _BELL_RISE, (450, 1000), _WIND_FALL),  # Tenor Sax
    67: ((40, 120), _BELL_RISE, (300, 700), _WIND_FALL),  # Baritone Sax
    68: ((200, 400), _BELL_RISE, (1000, 2000), _WIND_FALL),  # Oboe
    69: ((150, 300), _BELL_RISE, (700, 1500), _WIND_FALL),  # English Horn
    70: ((50, 120), _BELL_RISE, (350, 700), _WIND_FALL),  # Bassoon
    71: ((100, 200), _BELL_RISE, (1200, 2200), _WIND_FALL),  # Clarinet
    72: ((500, 900), _BELL_RISE, (2000, 5000), (-24.0, -8.0)),  # Piccolo
    73: ((200, 350), _BELL_RISE, (1500, 4000), (-24.0, -8.0)),  # Flute
    74: ((250, 500), _BELL_RISE, (1500, 3500), (-24.0, -8.0)),  # Recorder
    75: ((150, 400), _BELL_RISE, (1000, 3000), (-24.0, -8.0)),  # Pan Flute
    76: ((100, 300), _BELL_RISE, (800, 2500), (-24.0, -8.0)),  # Blown Bottle
    77: ((150, 300), _BELL_RISE, (1500, 4000), (-24.0, -8.0)),  # Shakuhachi
    78: ((500, 1000), _BELL_RISE, (2000, 5000), (-24.0, -8.0)),  # Whistle
    79: ((200, 400), _BELL_RISE, (1000, 3000), (-24.0, -8.0)),  # Ocarina
}


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))


def _formants(rng: np.random.Generator, count: tuple[int, int], hz: tuple[float, float],
              gain: tuple[float, float], bandwidth: tuple[float, float] = (0.2, 0.6)) -> tuple:
    """Random resonances: (centre Hz, bandwidth Hz, gain dB), log-uniform centres, bandwidth relative to centre."""
    out = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        centre = math.exp(rng.uniform(math.log(hz[0]), math.log(hz[1])))
        out.append((centre, centre * rng.uniform(*bandwidth), rng.uniform(*gain)))
    return tuple(out)


def draw_timbre(program: int, bank: int) -> Timbre:
    """The random instrument of ``(program, bank)``: the program's archetype, its ranges drawn from one seed."""
    rng = np.random.default_rng([program, bank, 0x5EED])
    timbre = _draw_archetype(program, rng)
    rolloff = _log_uniform(rng, (1500, 10000)), rng.uniform(-18, -3)
    if program not in SIZES:
        return replace(timbre, rolloff_hz=rolloff[0], rolloff_db=rolloff[1])
    resonance, rise, cutoff, fall = SIZES[program]
    return replace(timbre, highpass_hz=_log_uniform(rng, resonance), highpass_db=rng.uniform(*rise),
                   rolloff_hz=_log_uniform(rng, cutoff), rolloff_db=rng.uniform(*fall))


# Each archetype's ranges: a function of (kind, rng) drawing its Timbre; the draws happen in the
# order written (the same seed gives the same instrument).


def _struck(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    return Timbre(kind, slope_db=u(-9, -4), comb=u(1 / 12, 1 / 7), inharmonicity=10 ** u(-4.3, -3.2),
                  attack=u(0.001, 0.004), decay=u(3.0, 12.0), decay_tilt=u(0.25, 0.6), release=u(0.08, 0.3),
                  noise_db=u(-40, -25), noise_hz=u(800, 3000), noise_q=u(0.5, 1.5), chiff=u(0.6, 1.0),
                  formants=_formants(rng, (0, 2), (200, 3000), (-6, 6)), detune_cents=(0.0, u(0.5, 3)),
                  velocity_brightness=u(6, 14))


def _tine(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    bell = u(5.0, 9.0)
    return Timbre(kind, slope_db=u(-24, -14), partial_ratios=(1.0, 2.0, 3.0, bell), attack=u(0.001, 0.005),
                  decay=u(2.0, 6.0), decay_tilt=u(0.4, 1.0), release=u(0.1, 0.3), noise_db=-70,
                  extra={"bell_db": u(-18, -6), "bell_decay": u(0.05, 0.3)}, velocity_brightness=u(6, 12))


def _quilled(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    short = kind == "clavinet"
    return Timbre(kind, slope_db=u(-4, -1), comb=u(1 / 14, 1 / 5), inharmonicity=10 ** u(-5, -4),
                  attack=u(0.001, 0.003), decay=u(0.5, 1.5) if short else u(1.5, 5.0), decay_tilt=u(0.2, 0.5),
                  release=u(0.02, 0.1), noise_db=u(-40, -28), noise_hz=u(2000, 6000), chiff=u(0.5, 1.0),
                  formants=_formants(rng, (1, 3), (300, 4000), (-8, 8)))


def _organ(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    stops = [u(-30, 0) if rng.random() < 0.7 else -80.0 for _ in range(9)]
    stops[0] = max(stops[0], u(-12, 0))
    pipe = kind == "pipe_organ"
    return Timbre(kind, slope_db=u(-6, 0) if pipe else 0.0,
                  partial_ratios=(1, 2, 3, 4, 5, 6, 8, 10, 12) if not pipe else (),
                  attack=u(0.003, 0.02) if not pipe else u(0.03, 0.12), sustain_slope=0.0,
                  release=u(0.01, 0.06) if not pipe else u(0.1, 0.4),
                  noise_db=u(-60, -35) if pipe else u(-70, -50), noise_hz=u(1000, 5000),
                  chiff=u(0.3, 1.0) if pipe else 0.0, tremolo=u(0, 0.15), tremolo_hz=u(5, 7),
                  even_db=u(-6, 3), extra={"stops_db": tuple(stops), "click": kind == "percussive_organ"},
                  velocity_brightness=0.0, detune_cents=(0.0, u(0, 4)) if pipe else ())


def _free_reed(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    spread = u(2, 15)
    return Timbre(kind, slope_db=u(-6, -2), even_db=u(-8, 2), attack=u(0.02, 0.08), sustain_slope=u(-2, 0),
                  release=u(0.05, 0.15), formants=_formants(rng, (1, 3), (400, 4000), (-6, 10)),
                  noise_db=u(-45, -30) if kind == "harmonica" else u(-60, -40), noise_hz=u(1000, 4000),
                  detune_cents=(0.0, spread) if rng.random() < 0.6 or kind == "free_reed" else (),
                  tremolo=u(0, 0.1), vibrato_cents=u(0, 15) if kind == "harmonica" else 0.0)


# Plucked strings: the range of the T60 of the fundamental, s.
PLUCK_DECAY = {"plucked": (1.5, 6.0), "muted_pluck": (0.15, 0.4), "pizzicato": (0.3, 1.2), "harp": (2.0, 6.0),
               "guitar_harmonics": (1.5, 4.0)}


def _plucked(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    return Timbre(kind, slope_db=u(-9, -4) if kind != "harp" else u(-12, -7), comb=u(1 / 10, 1 / 4),
                  inharmonicity=10 ** u(-5, -3.8), attack=u(0.001, 0.004), decay=u(*PLUCK_DECAY[kind]),
                  decay_tilt=u(0.3, 0.8), release=u(0.05, 0.3), noise_db=u(-45, -30), noise_hz=u(1500, 5000),
                  chiff=u(0.4, 1.0), formants=_formants(rng, (1, 3), (150, 3500), (-6, 10)),
                  extra={"harmonics_only": kind == "guitar_harmonics"})


def _distorted(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    return Timbre(kind, slope_db=u(-7, -3), comb=u(1 / 8, 1 / 4), attack=u(0.001, 0.005), decay=u(3.0, 8.0),
                  decay_tilt=u(0.2, 0.5), release=u(0.05, 0.2), drive=u(8, 30), noise_db=-60,
                  formants=_formants(rng, (1, 3), (800, 4000), (-4, 8)), extra={"cabinet_hz": u(3000, 7000)})


def _bowed(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    tremolo = kind == "tremolo_bowed"
    return Timbre(kind, slope_db=u(-8, -3), comb=u(1 / 12, 1 / 6) if rng.random() < 0.5 else 0.0,
                  attack=u(0.05, 0.25), sustain_slope=u(-3, 1), release=u(0.1, 0.4),
                  # the body's many narrow resonances, and the bridge's broad hill near 2-3 kHz
                  formants=(_formants(rng, (5, 10), (200, 5000), (-10, 10), bandwidth=(0.03, 0.15))
                            + _formants(rng, (1, 1), (1800, 3200), (0, 8), bandwidth=(0.4, 0.8))),
                  noise_db=u(-45, -28),
                  noise_hz=u(1500, 6000), noise_q=u(0.5, 2.0), vibrato_cents=u(5, 30), vibrato_hz=u(4.5, 7),
                  tremolo=u(0.5, 0.9) if tremolo else u(0, 0.08), tremolo_hz=u(8, 16) if tremolo else u(4, 7),
                  detune_cents=(0.0, u(3, 15), -u(3, 15)) if rng.random() < 0.4 else ())


def _membrane(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    return Timbre(kind, partial_ratios=(1.0, 1.5, 1.99, 2.44, 2.89, 3.33, 3.77), slope_db=u(-10, -4),
                  attack=u(0.001, 0.005), decay=u(0.8, 3.0), decay_tilt=u(0.5, 1.2), release=u(0.1, 0.4),
                  noise_db=u(-30, -18), noise_hz=u(200, 1200), chiff=1.0, random_phase=True)


def _lip_reed(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    mute = kind == "muted_brass"
    return Timbre(kind, slope_db=u(-4, 0), attack=u(0.02, 0.09),
                  sustain_slope=u(-2, 1), release=u(0.05, 0.2), brighten_on_attack=u(6, 20),
                  formants=(_formants(rng, (1, 2), (600, 1600), (4, 12)) +
                            (((u(1500, 3500), 800.0, u(10, 20)),) if mute else ())),
                  even_db=u(-2, 2), noise_db=u(-55, -35), noise_hz=u(800, 3000),
                  vibrato_cents=u(0, 10), vibrato_hz=u(4.5, 6.5), velocity_brightness=u(10, 20),
                  extra={"weak_fundamental_db": u(-15, -6) if mute else 0.0},
                  detune_cents=(0.0, u(2, 10)) if kind == "synth_brass" or rng.random() < 0.3 else ())


def _reed(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    return Timbre(kind, slope_db=u(-5, 0), even_db=u(-28, -12) if kind == "cylindrical_reed" else u(-4, 2),
                  attack=u(0.02, 0.08), sustain_slope=u(-2, 0.5), release=u(0.04, 0.15),
                  formants=_formants(rng, (1, 3), (500, 3500) if kind != "conical_reed" else (400, 2500),
                                     (4, 14)),
                  noise_db=u(-50, -30), noise_hz=u(1500, 5000), vibrato_cents=u(0, 20), vibrato_hz=u(4.5, 6.5),
                  velocity_brightness=u(6, 14),
                  extra={"weak_fundamental_db": u(-10, 0) if kind == "double_reed" else 0.0,
                         "even_below_cutoff": kind == "cylindrical_reed"})


def _flue(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    breathy = kind == "breathy_flue"
    return Timbre(kind, slope_db=u(-14, -4) if kind != "vessel" else u(-40, -25),
                  even_db=u(-6, 4), attack=u(0.03, 0.12), sustain_slope=u(-2, 0.5), release=u(0.03, 0.12),
                  noise_db=u(-28, -14) if breathy else u(-45, -25), noise_hz=u(1500, 7000), noise_q=u(0.4, 1.2),
                  chiff=u(0.5, 1.5), vibrato_cents=u(0, 20), vibrato_hz=u(4.5, 6.5), tremolo=u(0, 0.08),
                  velocity_brightness=u(3, 10))


def _generic(kind: str, rng: np.random.Generator) -> Timbre:
    u = rng.uniform
    return Timbre(kind, slope_db=u(-12, -2), attack=u(0.005, 0.1), sustain_slope=u(-3, 0), release=u(0.05, 0.3),
                  formants=_formants(rng, (0, 3), (200, 5000), (-10, 10)))


# Archetype -> the function that draws it.
DRAWERS = {
    "struck": _struck, "tine": _tine, "harpsichord": _quilled, "clavinet": _quilled,
    **dict.fromkeys(("drawbar", "percussive_organ", "pipe_organ"), _organ),
    **dict.fromkeys(("free_reed", "harmonica"), _free_reed),
    **dict.fromkeys(PLUCK_DECAY, _plucked), "distorted": _distorted,
    **dict.fromkeys(("bowed", "tremolo_bowed"), _bowed), "membrane": _membrane,
    **dict.fromkeys(("lip_reed", "muted_brass", "synth_brass"), _lip_reed),
    **dict.fromkeys(("conical_reed", "double_reed", "cylindrical_reed"), _reed),
    **dict.fromkeys(("flue", "breathy_flue", "vessel"), _flue), "generic": _generic,
}


def _draw_archetype(program: int, rng: np.random.Generator) -> Timbre:
    kind = ARCHETYPES.get(program, "generic")
    return DRAWERS[kind](kind, rng)

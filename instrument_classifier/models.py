"""The networks: their layers and architectures (Keras, backend-neutral).

Every network is a function ``network(input_shape, n_classes, *, floor,
ceiling, db_step, seed, **options)`` returning a functional ``keras.Model``
that maps scaled chromagrams (batch, 44 time frames, 115 semitone bins, 1)
to class probabilities; :data:`NETWORKS` names them, and
:func:`build_model` builds an architecture of :mod:`architectures` (a
network and its options) by name.  Trained on fine labels (instruments), the
saved model ends in :class:`GroupSum`, which adds them up into the classes
(families); the training-only augmentations are in :mod:`augmentation`.
Code here uses only ``keras`` and ``keras.ops``.  Loading a
trained model folder: :mod:`model_bundle`.

>>> model = build_model("relative-harmonic", (44, 115, 1), n_classes=7, seed=42)
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import keras
from keras import layers, ops

from .architectures import ARCHITECTURE_OPTIONS
from .augmentation import RandomEqualiser, RandomLevel, RandomPitchShift, RandomSwellCut
from .cli import UserError


# ---------------------------------------------------------------------------
# Layers of the networks (the training-only augmentations: augmentation.py)


@keras.saving.register_keras_serializable(package="instrument_classifier")
class RelativeLevel(layers.Layer):
    """Levels relative to each clip's loudest cell, floored ``range_db`` below it.

    The chromagram is in absolute dB: a recording's level and its noise floor
    (a real room's -60 dB hiss, where a clean render is silent down to -120
    dB) would otherwise be features.  Subtracting each example's maximum
    removes the level; the floor hides what lies more than ``range_db`` under
    the peak, so a noise floor below it looks like silence.  ``db_step`` is
    the scaled size of one dB.  (batch, frames, bins, 1) -> same, in
    [-range_db * db_step, 0].
    """

    def __init__(self, range_db: float = 80.0, db_step: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.range_db = float(range_db)
        self.db_step = float(db_step)

    def call(self, inputs):
        peak = ops.max(inputs, axis=(1, 2, 3), keepdims=True)
        return ops.maximum(inputs - peak, ops.cast(-self.range_db * self.db_step, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "range_db": self.range_db, "db_step": self.db_step}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class PitchWindow(layers.Layer):
    """Pad (with ``fill_value``) or crop the top of the pitch axis to ``positions + span - 1`` bins.

    A 'valid' convolution ``span`` bins wide then has exactly ``positions``
    outputs along pitch: output p sees bins p .. p + span - 1, the candidate
    fundamental p and the ``span - 1`` semitones above it.
    (batch, frames, bins, channels) -> (batch, frames, positions + span - 1, channels)
    """

    def __init__(self, positions: int, span: int, fill_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.positions = int(positions)
        self.span = int(span)
        self.fill_value = float(fill_value)

    def call(self, inputs):
        bins, needed = inputs.shape[2], self.positions + self.span - 1
        if needed <= bins:
            return inputs[:, :, :needed, :]
        return ops.pad(inputs, [[0, 0], [0, 0], [0, needed - bins], [0, 0]], constant_values=self.fill_value)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.positions + self.span - 1, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "positions": self.positions, "span": self.span,
                "fill_value": self.fill_value}


@keras.saving.register_keras_serializable(package="instrument_classifier")
class PitchMax(layers.Layer):
    """Max over the pitch axis: (batch, frames, bins, channels) -> (batch, frames, channels)."""

    def call(self, inputs):
        return ops.max(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[3])


@keras.saving.register_keras_serializable(package="instrument_classifier")
class HarmonicTemplates(layers.Conv2D):
    """A 'valid' Conv2D over a one-channel chromagram, computed as a Conv1D along pitch over stacked frames.

    The same layer, weights and result as ``layers.Conv2D`` (up to the order
    of float sums): each output frame's ``kernel_size[0]`` input frames become
    the channels of a 1-D convolution along pitch.  Written for speed: the
    one-channel Conv2D's kernel gradient (an im2col of every patch) was most
    of a training step; on 2 CPU cores (TensorFlow, the default network and
    dataset) an epoch is 1.32x faster, 1.42x in CPU (bench/bench_training.py).
    """

    def convolution_op(self, inputs, kernel):
        frames, span, channels, filters = kernel.shape
        if (channels != 1 or self.padding != "valid" or self.strides[1] != 1 or tuple(self.dilation_rate) != (1, 1)
                or self.data_format != "channels_last" or self.groups != 1):
            return super().convolution_op(inputs, kernel)
        hop, bins = self.strides[0], inputs.shape[2]
        outputs = (inputs.shape[1] - frames) // hop + 1
        windows = [[o * hop + f for f in range(frames)] for o in range(outputs)]
        x = ops.take(inputs[..., 0], ops.convert_to_tensor(windows, dtype="int32"), axis=1)  # (B, O, frames, bins)
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2)), (-1, bins, frames))                 # (B * O, bins, frames)
        y = ops.conv(x, ops.transpose(kernel[:, :, 0, :], (1, 0, 2)), strides=1, padding="valid")
        return ops.reshape(y, (-1, outputs, bins - span + 1, filters))                       # (B, O, positions, F)


@keras.saving.register_keras_serializable(package="instrument_classifier")
class GroupSum(layers.Layer):
    """Probabilities of fine classes -> probabilities of the groups they belong to.

    ``groups[k]`` is the group (class) index of fine class k; the output is
    ``p_group[g] = sum of p[k] with groups[k] == g``, e.g. instrument
    probabilities summed into family probabilities.
    (batch, n_fine) -> (batch, n_groups)
    """

    def __init__(self, groups, n_groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = [int(g) for g in groups]
        self.n_groups = int(n_groups)

    def call(self, inputs):
        matrix = ops.one_hot(ops.convert_to_tensor(self.groups, dtype="int32"), self.n_groups, dtype=inputs.dtype)
        return ops.matmul(inputs, matrix)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_groups)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "n_groups": self.n_groups}


# ---------------------------------------------------------------------------
# Architectures


def _layer_seeds(seed: int | None):
    """A distinct seed for each random layer, in build order (``None`` stays ``None``).

    Two layers given the same seed draw the same random stream: their dropout
    masks (or a transposition and a gain) would be correlated.
    """
    k = 0
    while True:
        yield None if seed is None else (seed + k) % 2**32
        k += 1


def reference(input_shape, n_classes: int, *, floor: float = 0.0, ceiling: float = 1.0, db_step: float = 0.0,
              seed: int | None = None) -> keras.Model:
    """The original network: 8 convolutions in 4 blocks, ~221k parameters.

    input -> BN -> 4 x [2 x (conv 3x3, BN, ELU), maxpool 2x2, dropout 0.1]
    with 32, 64, 64, 64 filters -> flatten -> dense -> BN -> softmax.  No
    augmentation (``floor``, ``ceiling`` and ``db_step`` are unused), as the original.
    """
    seeds = _layer_seeds(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="chromagram")
    x = layers.BatchNormalization()(inputs)
    for filters in (32, 64, 64, 64):
        for _ in range(2):
            x = layers.Conv2D(filters, (3, 3), padding="same")(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("elu")(x)
        x = layers.MaxPooling2D((2, 2))(x)
        x = layers.Dropout(0.1, seed=next(seeds))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(n_classes)(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="reference")


def harmonic(input_shape, n_classes: int, *, floor: float = 0.0, ceiling: float = 1.0, db_step: float = 0.0,
             seed: int | None = None, filters: int = 64, span: int = 37, positions: int = 88,
             frames_per_template: int = 8, template_hop: int = 4, max_shift: int = 3, max_cut_db: float = 24.0,
             max_boost_db: float = 24.0, relative_db: float | None = None, dense_units: int = 64,
             dropout: float = 0.3, eq_tilt_db: float = 0.0, eq_bump_db: float = 0.0,
             bn_momentum: float = 0.99, eq_jitter_db: float = 0.0, lowpass_probability: float = 0.5,
             lowest_cutoff: int = 100, swell_cut_probability: float = 0.0) -> keras.Model:
    """The default: learnt harmonic templates, matched at every pitch, max over pitch.

    The chromagram's bins are semitones, so a note's harmonic series has the
    same shape at every pitch (harmonic h lies round(12 log2 h) bins above the
    fundamental) and a transposition is a shift along the pitch axis.

    1. Training only: random transpositions of up to ``max_shift`` semitones,
       random gains in [-max_cut_db, +max_boost_db] and random low-passes
       (:class:`RandomLevel`: with ``lowpass_probability``, every bin from a
       random one between ``lowest_cutoff`` and the top is silenced; bin 100
       is MIDI 121, 8.9 kHz), so that a file's level and codec matter less.
       Cutting down to 4 kHz (bin 86) helps telephone-band files but costs
       more on full-band ones (docs/generalisation.md, *Band-limited files*).  With
       ``swell_cut_probability``, notes that swell reach their full level
       right after their onset (:class:`RandomSwellCut`).
    2. ``filters`` templates, each ``frames_per_template`` frames (~0.37 s) by
       ``span`` semitones (the fundamental and three octaves above it, i.e.
       harmonics 1-8 and what lies between them), slid along time with hop
       ``template_hop`` and matched at each of ``positions`` candidate
       fundamentals (bins 0-87, MIDI 21-108, by default): one large 'valid'
       convolution (:class:`HarmonicTemplates`: the frames of a template as
       the channels of a 1-D convolution along pitch, which trains faster on
       a CPU than a one-channel 2-D one).
    3. Max over the candidate fundamentals: how well each template fits the
       note, wherever it is; the same for a transposed note.
       (B, 10, 88, F) -> (B, 10, F).  Then batch norm and ELU, on the small
       pooled tensor only.
    4. A time convolution over the template responses, mean and max over time.
    5. The register matters too (instruments' ranges differ), so the input's
       mean level per octave joins the timbre descriptor before the classifier.
    """
    frames, seeds = input_shape[0], _layer_seeds(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="chromagram")
    x = RandomPitchShift(max_shift, fill_value=floor, seed=next(seeds), name="pitch_shift")(inputs)
    x = RandomLevel(max_cut_db, max_boost_db, db_step=db_step, floor=floor, ceiling=ceiling,
                    lowpass_probability=lowpass_probability, lowest_cutoff=lowest_cutoff, seed=next(seeds),
                    name="level")(x)
    if swell_cut_probability:  # its own random stream, so that it leaves the other layers' draws as they were
        x = RandomSwellCut(swell_cut_probability, db_step=db_step, floor=floor,
                           seed=None if seed is None else (seed + 7907) % 2**32, name="swell_cut")(x)
    if eq_tilt_db or eq_bump_db:
        x = RandomEqualiser(eq_tilt_db, eq_bump_db, db_step=db_step, floor=floor, ceiling=ceiling, seed=next(seeds),
                            max_jitter_db=eq_jitter_db, name="equaliser")(x)
    if relative_db:
        x = RelativeLevel(relative_db, db_step, name="relative_level")(x)
        floor = -relative_db * db_step
    register = layers.Flatten(name="register")(layers.AveragePooling2D((frames, 12), name="octave_levels")(x))
    x = PitchWindow(positions, span, fill_value=floor, name="pitch_window")(x)         # (B, 44, P + span - 1, 1)
    x = HarmonicTemplates(filters, (frames_per_template, span), strides=(template_hop, 1), padding="valid",
                          name="harmonic_templates")(x)                                    # (B, 10, P, F)
    x = PitchMax(name="max_over_pitch")(x)                                              # (B, 10, F)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("elu")(x)
    x = layers.Conv1D(filters, 3, padding="same", use_bias=False, name="envelope")(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.Activation("elu")(x)
    timbre = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Concatenate(name="descriptor")([timbre, register])
    x = layers.Dropout(dropout, seed=next(seeds))(x)
    x = layers.Dense(dense_units, activation="elu")(x)
    x = layers.Dropout(dropout, seed=next(seeds))(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="harmonic")


NETWORKS: dict[str, Callable[..., keras.Model]] = {
    "harmonic": harmonic,
    "reference": reference,
}
# The architectures by name (architectures.py): a network and its options.
ARCHITECTURES = {name: NETWORKS[network] for name, (network, _) in ARCHITECTURE_OPTIONS.items()}


# The allowed range of each network option (low, high), inclusive; None: no bound that side.  Levels in dB stop at
# the chromagram's range (120 dB): a larger gain or equaliser moves every cell past it (1e308 overflowed).
OPTION_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "filters": (1, None), "span": (1, None), "positions": (1, None), "frames_per_template": (1, None),
    "template_hop": (1, None), "max_shift": (0, None), "max_cut_db": (0, 120), "max_boost_db": (0, 120),
    "relative_db": (0, 120), "dense_units": (1, None), "dropout": (0, 0.95), "eq_tilt_db": (0, 120),
    "eq_bump_db": (0, 120), "bn_momentum": (0, 0.999), "eq_jitter_db": (0, 120),
    "lowpass_probability": (0, 1), "lowest_cutoff": (0, None), "swell_cut_probability": (0, 1),
}
# Set by the training itself, never by an option.
_NOT_OPTIONS = ("input_shape", "n_classes", "floor", "ceiling", "db_step", "seed")


def check_options(arch: str, options: dict, input_shape) -> dict:
    """``options`` checked (whole numbers as ints); UserError, one line, for an option the architecture
    lacks, of the wrong type or out of its range."""
    network, _ = ARCHITECTURE_OPTIONS[arch]
    parameters = inspect.signature(NETWORKS[network]).parameters
    known = [name for name in parameters if name not in _NOT_OPTIONS]
    for name, value in options.items():
        if name not in known:
            raise UserError(f"architecture {arch} has no option {name!r} "
                            f"(its options: {', '.join(known) if known else 'none'})")
        default = parameters[name].default
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not numeric and not (value is None and default is None):
            raise UserError(f"option {name} of architecture {arch} must be a finite number"
                            f"{' (or null: off)' if default is None else ''}, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and value != int(value):
            raise UserError(f"option {name} of architecture {arch} must be a whole number, got {value!r}")
        low, high = OPTION_BOUNDS.get(name, (None, None))
        if name in ("positions", "span", "lowest_cutoff"):  # at most the input's pitch bins
            high = input_shape[1] - (1 if name == "lowest_cutoff" else 0)
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            bounds = (f"in {low} to {high}" if low is not None and high is not None
                      else f"at least {low}" if low is not None else f"at most {high}")
            raise UserError(f"option {name} of architecture {arch} must be {bounds}, got {value!r}")
    return {name: int(value) if isinstance(parameters[name].default, int) and value is not None else value
            for name, value in options.items()}


def build_model(arch: str, input_shape, n_classes: int, *, floor: float = 0.0, ceiling: float = 1.0,
                db_step: float = 0.0, seed: int | None = None, options: dict | None = None) -> keras.Model:
    """Build the named architecture; UserError for an unknown name.

    ``floor`` and ``ceiling`` are the scaled values of silence and of 0 dB,
    ``db_step`` the scaled size of one dB (for the augmentations); ``seed``
    seeds them and dropout.  ``options`` are further keyword arguments of the
    architecture's network function, over those the architecture sets
    (``architectures.ARCHITECTURE_OPTIONS``), e.g. ``{"filters": 128}``.
    """
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r} (choose from: {', '.join(ARCHITECTURES)})")
    network, defaults = ARCHITECTURE_OPTIONS[arch]
    options = check_options(arch, options or {}, input_shape)
    try:
        return NETWORKS[network](tuple(input_shape), n_classes, floor=floor, ceiling=ceiling, db_step=db_step,
                                 seed=seed, **{**defaults, **options})
    except (TypeError, ValueError) as error:  # an unknown option, or a value Keras refuses (filters=0, dropout=1.5)
        raise UserError(f"bad option for architecture {arch}: {str(error).splitlines()[0]}") from None

"""The architectures' names, options and training defaults: no Keras here, so ``train.py --help`` can show them.

``relative-harmonic`` (the default) is the ``harmonic`` network of
:mod:`models` with the options below: levels relative to each clip's peak
(floored 60 dB under it) and a random equaliser in training: a smooth tilt,
bells, and an independent gain for every semitone (``eq_jitter_db``).  It is
what held up best on sound banks it never heard (README, *Generalisation*).
A wider classifier or less dropout (``dense_units=128``, ``dropout=0.2``) is
2-4 points better on new notes of the training fonts, but no better on a
lineage it never heard (docs/generalisation.md, *Capacity and regularisation*): the
harmonic network's 64 units and dropout 0.3 stay.
``harmonic`` is the network of the seed's single-font experiment, on absolute
levels; ``reference`` is the original 8-convolution network.
"""

from __future__ import annotations

# Architecture -> (network function in models.py, its keyword options).
ARCHITECTURE_OPTIONS: dict[str, tuple[str, dict]] = {
    "relative-harmonic": ("harmonic", {"relative_db": 60.0, "eq_tilt_db": 18.0, "eq_bump_db": 9.0,
                                       "eq_jitter_db": 6.0}),
    "harmonic": ("harmonic", {}),
    "reference": ("reference", {}),
}
DEFAULT_ARCHITECTURE = "relative-harmonic"

# Per-architecture training defaults; command-line arguments override them.
#   reference: as the original was trained (Adam, fixed learning rate, one
#   softmax over the families).
#   harmonic networks: AdamW with a cosine decay to zero over the run, so the
#   last epochs settle; label smoothing keeps the softmax from saturating; and
#   instrument labels as the training signal (training.fine_classes).  The
#   relative one trains on the larger multi-font dataset: fewer epochs.  18 on
#   the default dataset's 6000 training clips beat 30 on 3600 and 15 on 7200
#   at the same training time (docs/generalisation.md, *More clips, fewer epochs*).
_HARMONIC = {"epochs": 40, "batch_size": 32, "learning_rate": 3e-3, "optimizer": "adamw", "schedule": "cosine",
             "label_smoothing": 0.05, "patience": 0, "fine_labels": True}
TRAINING_DEFAULTS = {
    "relative-harmonic": {**_HARMONIC, "epochs": 18},
    "harmonic": _HARMONIC,
    "reference": {"epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adam",
                  "schedule": "constant", "label_smoothing": 0.0, "patience": 0, "fine_labels": False},
}


def describe_default(key: str) -> str:
    """One training default of every architecture, for ``--help``: 'relative-harmonic 18, harmonic 40, reference 30'."""
    def shown(value):
        return ("on" if value else "off") if isinstance(value, bool) else value

    return ", ".join(f"{name} {shown(TRAINING_DEFAULTS[name][key])}" for name in ARCHITECTURE_OPTIONS)

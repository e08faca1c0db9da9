"""Recognise the instrument family playing a short single-note clip.

The importable work behind the top-level stage scripts. Data flows one way:

    instruments, synthesis -> generation, dataset -> features
        -> training_data -> models, training -> evaluation, error_analysis,
        leaderboard -> prediction -> webapp

Shared helpers (defaults, command-line error handling, atomic writes and run
records) live in :mod:`defaults` and :mod:`cli`.
"""

__version__ = "0.1.0"

"""Recognise the instrument family playing a short single-note clip.

The importable work behind the top-level stage scripts, one job a module
(README, *Layout*).  Data flows one way:

    instruments, synthesis, additive, soundfonts, variation -> generation, dataset
        -> features (the transform), feature_store (a dataset's features), feature_extraction, plots
        -> scaling, training_data -> model_files, architectures, augmentation, models, model_bundle, metrics,
           losses, training
        -> evaluation, generalisation, error_analysis, leaderboard
        -> audio, prediction -> webapp

Shared helpers (defaults, command-line error handling, atomic writes and run
records) live in :mod:`defaults` and :mod:`cli`.
"""

import os

__version__ = "0.1.0"

# TensorFlow reads these once, when it is first imported (by Keras, in
# :mod:`models`), so they are set here, before any stage can import it; a
# value the user exported wins.
#   TF_NUM_INTEROP_THREADS=1: ops run one at a time (each still on every
#     core).  With several ops in flight the same seed gave weights differing
#     by up to 1e-3 after two epochs; one at a time it is bit for bit the same,
#     and as fast on 2 cores (measured).
#   TF_ENABLE_ONEDNN_OPTS=0: oneDNN's fused kernels may reorder float sums
#     ("slightly different numerical results"); as fast here without them.
#   TF_CPP_MIN_LOG_LEVEL=3: none of TensorFlow's C++ log lines on stderr, where
#     the scripts promise one-line messages (start-up notes, and an "E" line
#     at every fit about a tf.data attribute this build does not know; real
#     failures still raise Python exceptions).
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

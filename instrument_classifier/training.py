"""Train one model on a prepared dataset into a self-describing model folder.

``train_model`` builds the run in a hidden temporary folder beside
``DATASET/models/`` and renames it to ``DATASET/models/<model_id>/`` only when
every file is written, so a crashed run leaves nothing that
``leaderboard.py`` would rank.  The folder holds::

    model.keras            the best epoch on validation (lowest cross-entropy, no smoothing)
    preprocessing.json     feature extractor params, scaler, class names, target
    config.json            every argument, dataset, seed, timings, library versions
    model_summary.txt      keras' layer table
    learning_curves.csv    per epoch: loss, cross-entropy, accuracy, error (train and valid), lr, seconds
    predictions.csv        per sample: split, true, predicted, p_<class> probabilities
    final_metrics.csv      rows train/valid/test: n, loss, error, error_low, error_high, accuracy, auc, ece

Same seed, same result on a CPU: ``keras.utils.set_random_seed`` seeds
Python, NumPy and the backend, and TensorFlow's op determinism is switched on.
Training, validation and the predictions read the chromagrams batch by
batch through a ``keras.utils.PyDataset`` (:mod:`streaming`), in memory or
chunked (``extract_features.py --layout chunked``) alike, hence the same
model either way; the training batches follow a new order every epoch.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

import keras

from .cli import UserError, atomic_dir, library_versions, signals_between_steps, warn, write_json
from .defaults import DEFAULT_SEED, SCORING_BATCH_SIZE
from .features import ALGORITHM_VERSION
from .model_files import (CONFIG_JSON, FINAL_METRICS_CSV, LEARNING_CURVES_CSV, MODEL_FILE, MODEL_SUMMARY_TXT,
                          MODELS_DIR, PREDICTIONS_CSV, PREPROCESSING_JSON, dataset_name)
from .architectures import ARCHITECTURE_OPTIONS, DEFAULT_ARCHITECTURE, TRAINING_DEFAULTS
from .losses import AllowedSetCrossEntropy, allowed_targets, crossentropy_metric, group_accuracy
from .metrics import metrics_table, predictions_table
from .models import ARCHITECTURES, GroupSum, build_model
from .scaling import to_model_input
from .streaming import ChromagramBatches, EpochOrder, keras_input
from .temporaries import being_written
from .training_data import SPLITS, TrainingData, load_training_data


# The distributions of each Keras backend, whose versions a model's config.json records (TensorFlow is installed as
# tensorflow-cpu here, as tensorflow elsewhere: both are asked for).
BACKEND_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "jaxlib"), "torch": ("torch",)}


def new_model_id(arch: str, seed: int, models_dir: Path) -> str:
    """``YYYYMMDD-HHMMSS-<arch>-s<seed>``: sorts by start time; a suffix if taken.

    Taken: by a finished model, or by a run still training (its hidden
    temporary folder), so that two runs started in the same second do not
    both finish onto one name.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{arch}-s{seed}"
    model_id, n = base, 1
    while (models_dir / model_id).exists() or being_written(models_dir / model_id):
        n += 1
        model_id = f"{base}-{n}"
    return model_id


def enable_determinism(seed: int) -> None:
    """Seed every generator; make TensorFlow pick deterministic kernels."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# ---------------------------------------------------------------------------
# Fine labels: learn the instruments, predict their families


def fine_classes(data: TrainingData) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Instruments as finer classes of a family target.

    A family is a mixed bag of instruments (the strings family holds violins,
    a harp and timpani), so one softmax unit per family must learn a union
    of unlike timbres.  Given one unit per instrument heard in training, the
    network learns each timbre as such, and a family's probability is the sum
    of its instruments' (:class:`models.GroupSum`).  Clips of instruments the
    training split never heard (``--split instrument``) have no fine class.

    Returns
    -------
    fine_names : the instruments (ids) of the training split, in numeric order
    groups : [shape=(n_fine,)] the class index (family) of each instrument
    fine_y : [shape=(N,)] each row's instrument index, -1 where it has none
    """
    if data.target != "family" or "instrument_id" not in data.parameters.columns:
        raise UserError("fine labels need training data prepared for families (prepare_training.py --target family) "
                        "and an instrument_id column in parameters.csv")
    instrument = data.parameters["instrument_id"].astype(str).to_numpy()
    fine_names = sorted(set(instrument[data.split == "train"]), key=lambda name: (len(name), name))  # 1, 2, ..., 10
    index = {name: k for k, name in enumerate(fine_names)}
    groups = np.zeros(len(fine_names), dtype=np.int64)
    for name, family in zip(instrument, data.y):
        if name in index:
            groups[index[name]] = family
    fine_y = np.array([index.get(name, -1) for name in instrument], dtype=np.int64)
    return fine_names, groups, fine_y


# The largest learning rate taken: far past any that trains (a run at it diverges, said in one line); past
# float32's range (3.4e38) the optimiser's own arithmetic fails, with a traceback.
MAX_LEARNING_RATE = 1e6
MONITOR = "val_crossentropy"  # what picks the saved epoch (and stops early)


# ---------------------------------------------------------------------------
# Training


class _BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest :data:`MONITOR` (in memory), before any diverged.

    Once an epoch's loss is not a number, no later epoch is kept: weights that
    went through NaN or overflow are not a model, however their loss reads
    after (measured: a learning rate of 1e6 gives NaN in epoch 1, then a finite
    loss and 92 % error in epoch 2).  The first epoch's weights stand in until
    one is kept, with ``best_loss`` infinite: :func:`_fit` then refuses the run.
    """

    def on_train_begin(self, logs=None):
        self.best_loss, self.best_epoch, self.weights, self.diverged = np.inf, None, None, False

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get(MONITOR, np.nan)
        self.diverged = self.diverged or not np.isfinite(loss)
        if not self.diverged and loss < self.best_loss:
            self.best_loss, self.best_epoch, self.weights = loss, epoch + 1, self.model.get_weights()
        elif self.weights is None:
            self.best_epoch, self.weights = epoch + 1, self.model.get_weights()


class _EpochLog(keras.callbacks.Callback):
    """Record the learning rate and wall time of each epoch."""

    def on_train_begin(self, logs=None):
        self.rows: list[dict] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        lr = self.model.optimizer.learning_rate
        self.rows.append({"learning_rate": float(keras.ops.convert_to_numpy(lr)),
                          "seconds": round(time.perf_counter() - self._start, 3)})


def _optimizer(name: str, learning_rate: float, schedule: str, total_steps: int):
    if schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, total_steps))
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=1e-4)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def train_model(dataset_dir: str | os.PathLike, *, arch: str = DEFAULT_ARCHITECTURE, epochs: int | None = None,
                batch_size: int | None = None, learning_rate: float | None = None, seed: int = DEFAULT_SEED,
                patience: int | None = None, fine_labels: bool | None = None,
                models_dir: str | os.PathLike | None = None, training_dir: str | os.PathLike | None = None,
                model_options: dict | None = None, verbose: int = 2) -> Path:
    """Train ``arch`` on a prepared dataset; return the finished model folder.

    ``epochs``, ``batch_size``, ``learning_rate``, ``patience`` (early
    stopping on :data:`MONITOR`; 0 = off) and ``fine_labels`` (train on instruments,
    predict families: :func:`fine_classes`) default to
    ``TRAINING_DEFAULTS[arch]``; a default ``fine_labels`` that does not apply
    (another target, no instrument column) is dropped, an explicit one is an
    error.  ``verbose=2`` prints one progress line per epoch.
    """
    settings = training_settings(arch, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                 patience=patience, fine_labels=fine_labels)
    dataset_dir = Path(dataset_dir)
    data = load_training_data(dataset_dir, training_dir)
    models_dir = Path(models_dir) if models_dir is not None else dataset_dir / MODELS_DIR
    if settings["fine_labels"] and (data.target != "family" or "instrument_id" not in data.parameters.columns):
        if fine_labels:
            fine_classes(data)  # raises the explanation
        settings["fine_labels"] = False  # the default, where it does not apply
    enable_determinism(seed)

    run = _Run(data, settings, seed)
    network = _compiled_network(run, arch, seed, model_options)
    model_id = new_model_id(arch, seed, models_dir)
    with atomic_dir(models_dir / model_id) as tmp:
        if verbose:
            print(f"training {model_id}: {arch}, {network.count_params():,} parameters, "
                  f"{run.n_train} train / {run.n_valid} valid samples, "
                  f"{settings['epochs']} epoch{'s' if settings['epochs'] != 1 else ''}"
                  + (", streamed from chunked features" if data.streamed else "")
                  + (f", {len(run.fine_names)} instruments as fine classes" if settings["fine_labels"] else ""),
                  flush=True)
        fitted = _fit(network, run, verbose=verbose)
        _learning_curves(fitted).to_csv(tmp / LEARNING_CURVES_CSV, index=False)
        model = _save_best_model(network, run, fitted.best_weights.weights, tmp / MODEL_FILE)
        metrics = _write_predictions(model, data, tmp)
        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
        (tmp / MODEL_SUMMARY_TXT).write_text("\n".join(lines) + "\n")
        write_json(tmp / PREPROCESSING_JSON, _preprocessing_record(data))
        write_json(tmp / CONFIG_JSON, _config_record(model_id, arch, dataset_dir, data, seed, settings,
                                                     model_options, run, network, fitted))
    if verbose:
        row = metrics.set_index("split")
        print(f"trained in {fitted.seconds:.0f} s; best epoch {fitted.best_weights.best_epoch}; "
              + ", ".join(f"{name} error {row.loc[name, 'error']:.2%}" for name in SPLITS)
              + f", test AUC {row.loc['test', 'auc']:.4f}", flush=True)
    return models_dir / model_id


def training_settings(arch: str, **overrides) -> dict:
    """``TRAINING_DEFAULTS[arch]`` with the ``overrides`` that are not None; UserError for bad values."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r} (choose from: {', '.join(ARCHITECTURES)})")
    settings = dict(TRAINING_DEFAULTS[arch])
    settings.update({key: value for key, value in overrides.items() if value is not None})
    for name in ("epochs", "batch_size"):
        if settings[name] < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {settings[name]}")
    if not 0 < settings["learning_rate"] <= MAX_LEARNING_RATE:  # also refuses NaN
        raise UserError(f"--learning-rate must be a positive number up to {MAX_LEARNING_RATE:g}, "
                        f"got {settings['learning_rate']}")
    if settings["patience"] < 0:
        raise UserError(f"--patience must be 0 (no early stopping) or more, got {settings['patience']}")
    return settings


class _Run:
    """The inputs and targets of one training run.

    The network's softmax is over the fine classes (``fine_names``): the
    instruments with ``fine_labels``, else the classes themselves; ``groups``
    maps each to its class.  Validation is always scored on the classes.
    ``train`` and ``valid`` are :class:`streaming.ChromagramBatches` that read
    and scale a batch at a time, in memory or from chunked features alike;
    ``train`` visits its clips in a new order every epoch, drawn from ``seed``.
    """

    def __init__(self, data: TrainingData, settings: dict, seed: int):
        self.settings = settings
        train_rows, valid_rows = np.flatnonzero(data.split == "train"), np.flatnonzero(data.split == "valid")
        self.n_train, self.n_valid = len(train_rows), len(valid_rows)
        self.input_shape = (*data.chromagrams.shape[1:], 1)
        self.n_classes = len(data.class_names)
        if settings["fine_labels"]:
            self.fine_names, self.groups, fine_y = fine_classes(data)
            self.train_targets = np.eye(len(self.fine_names), dtype=np.float32)[fine_y[train_rows]]
        else:
            self.fine_names, self.groups = list(data.class_names), np.arange(self.n_classes)
            self.train_targets = allowed_targets(data.y[train_rows], self.groups)
        self.valid_targets = allowed_targets(data.y[valid_rows], self.groups)
        batch_size = settings["batch_size"]
        self.train = ChromagramBatches(data.chromagrams, data.scaler, rows=train_rows, targets=self.train_targets,
                                       batch_size=batch_size, shuffle=True, seed=seed)
        self.valid = ChromagramBatches(data.chromagrams, data.scaler, rows=valid_rows, targets=self.valid_targets,
                                       batch_size=batch_size)
        # The scaled silence floor, 0 dB and the scaled size of one dB, for the augmentations.
        db_range = data.feature_params["top_db"] - data.feature_params["floor_db"]
        self.floor, one_db, self.ceiling = (
            float(v) for v in data.scaler.transform(np.array([0.0, 1.0 / db_range, 1.0])))
        self.db_step = one_db - self.floor


def _compiled_network(run: _Run, arch: str, seed: int, model_options: dict | None) -> keras.Model:
    """The architecture over the fine classes, compiled with its optimizer, loss and metrics."""
    settings = run.settings
    network = build_model(arch, run.input_shape, len(run.fine_names), floor=run.floor, ceiling=run.ceiling,
                          db_step=run.db_step, seed=seed, options=model_options)
    steps = -(-run.n_train // settings["batch_size"]) * settings["epochs"]
    network.compile(
        optimizer=_optimizer(settings["optimizer"], settings["learning_rate"], settings["schedule"], steps),
        loss=AllowedSetCrossEntropy(label_smoothing=settings["label_smoothing"]),
        metrics=[group_accuracy(run.groups, run.n_classes), crossentropy_metric()],
    )
    return network


class _Fitted(NamedTuple):
    history: keras.callbacks.History
    epoch_log: _EpochLog
    best_weights: _BestWeights
    seconds: float
    cpu_seconds: float


def _fit(network: keras.Model, run: _Run, *, verbose: int) -> _Fitted:
    """Train; keep the best epoch's weights in memory, the learning rate and time of each epoch."""
    epoch_log, best_weights = _EpochLog(), _BestWeights()
    callbacks = [best_weights, epoch_log, keras.callbacks.TerminateOnNaN(), EpochOrder(run.train)]
    if run.settings["patience"]:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=MONITOR, patience=run.settings["patience"]))
    started, cpu_started = time.perf_counter(), time.process_time()
    with signals_between_steps() as pending:  # a kill ends fit after the current batch, then is raised
        def stop(batch, logs=None):
            if pending():
                network.stop_training = True

        callbacks.append(keras.callbacks.LambdaCallback(on_train_batch_end=stop, on_test_batch_end=stop))
        epochs = run.settings["epochs"]
        history = network.fit(keras_input(run.train, epochs=epochs), steps_per_epoch=len(run.train), epochs=epochs,
                              validation_data=keras_input(run.valid), shuffle=False, callbacks=callbacks,
                              verbose=verbose)
    # The validation loss shows weights or batch-norm statistics gone bad where the training loss may not.
    bad = next(((key, epoch, value) for key in ("loss", "val_loss")
                for epoch, value in enumerate(history.history.get(key, []), start=1) if not np.isfinite(value)), None)
    if bad is not None:
        what = f"the {bad[0].replace('_', 'idation ')} became {bad[2]} in epoch {bad[1]}"
        if not np.isfinite(best_weights.best_loss):
            raise UserError(f"training diverged: {what} (a lower --learning-rate, now "
                            f"{run.settings['learning_rate']:g}, may train)")
        warn(f"training diverged: {what}; the model is epoch {best_weights.best_epoch}, the best before it")
    return _Fitted(history, epoch_log, best_weights, time.perf_counter() - started,
                   time.process_time() - cpu_started)


def _learning_curves(fitted: _Fitted) -> pd.DataFrame:
    """learning_curves.csv: one row per epoch."""
    curves = pd.DataFrame(fitted.history.history)
    curves.insert(0, "epoch", np.arange(1, len(curves) + 1))
    curves["error"] = 1.0 - curves["accuracy"]
    curves["val_error"] = 1.0 - curves["val_accuracy"]
    curves = pd.concat([curves, pd.DataFrame(fitted.epoch_log.rows)], axis=1)
    return curves[["epoch", "loss", "crossentropy", "accuracy", "error", "val_loss", "val_crossentropy",
                   "val_accuracy", "val_error", "learning_rate", "seconds"]]


def _save_best_model(network: keras.Model, run: _Run, weights: list, path: Path) -> keras.Model:
    """Save the best epoch, mapped onto the classes, as ``path``; return the model as loaded back from it.

    A new functional model over the same layers: uncompiled, so that
    model.keras holds no training-only objects (the loss, the metric) that
    loading would need.
    """
    network.set_weights(weights)
    outputs = network.output
    if run.settings["fine_labels"]:
        outputs = GroupSum(run.groups, run.n_classes, name="class_probabilities")(outputs)
    keras.saving.save_model(keras.Model(network.input, outputs, name=network.name), path)
    return keras.saving.load_model(path, compile=False)


def _write_predictions(model: keras.Model, data: TrainingData, out_dir: Path) -> pd.DataFrame:
    """Predict every sample with the model as saved: predictions.csv and final_metrics.csv; return the metrics."""
    if data.streamed:
        x_all = ChromagramBatches(data.chromagrams, data.scaler, batch_size=SCORING_BATCH_SIZE)
        proba = np.asarray(model.predict(keras_input(x_all), verbose=0), dtype=np.float64)
    else:
        x_all = to_model_input(data.chromagrams, data.scaler)
        proba = np.asarray(model.predict(x_all, batch_size=SCORING_BATCH_SIZE, verbose=0), dtype=np.float64)
    if not np.isfinite(proba).all():
        raise UserError("training diverged: the model's outputs are not numbers (a lower --learning-rate may train)")
    predictions = predictions_table(data.parameters, data.split, data.y, proba, data.class_names)
    predictions.to_csv(out_dir / PREDICTIONS_CSV, index=False)
    metrics = metrics_table(predictions, data.class_names, SPLITS)
    metrics.to_csv(out_dir / FINAL_METRICS_CSV, index=False)
    return metrics


def _config_record(model_id: str, arch: str, dataset_dir: Path, data: TrainingData, seed: int, settings: dict,
                   model_options: dict | None, run: _Run, network: keras.Model, fitted: _Fitted) -> dict:
    """config.json: every argument, the dataset, seed, timings and library versions."""
    return {
        "model_id": model_id,
        "arch": arch,
        "dataset": str(dataset_dir.resolve()),
        "dataset_name": dataset_name(dataset_dir),
        "training_data": str(data.training_dir.resolve()),
        "features_identity": data.record.get("features_identity"),
        "target": data.target,
        "split": data.record.get("split"),
        "seed": seed,
        **settings,
        "model_options": {**ARCHITECTURE_OPTIONS[arch][1], **(model_options or {})},
        "epochs_run": len(fitted.history.history.get("loss", [])),
        "best_epoch": fitted.best_weights.best_epoch,
        "fine_classes": run.fine_names if settings["fine_labels"] else None,
        "parameters": int(network.count_params()),
        "train_seconds": round(fitted.seconds, 2),
        "train_cpu_seconds": round(fitted.cpu_seconds, 2),
        "cpu_count": os.cpu_count(),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "counts": {name: int(np.sum(data.split == name)) for name in SPLITS},
        "backend": keras.backend.backend(),
        "versions": library_versions("keras", *BACKEND_DISTRIBUTIONS.get(keras.backend.backend(), ()), "numpy",
                                     "scikit-learn", "pandas"),
    }


def _preprocessing_record(data: TrainingData) -> dict:
    """What turns a clip into model input, and model output into a class name."""
    record = data.record
    extra = {}
    if "peak_dbfs" in data.parameters.columns:
        # The level range of the training clips: prediction warns about clips far outside it.
        levels = data.parameters.loc[data.split == "train", "peak_dbfs"].astype(float)
        extra["peak_dbfs_range"] = [float(levels.min()), float(levels.max())]
    return {
        "target": record["target"],
        "class_names": data.class_names,
        "scaler": data.scaler.to_dict(),
        "features": data.feature_params,
        "algorithm_version": ALGORITHM_VERSION,
        "input_shape": list(data.chromagrams.shape[1:]) + [1],
        "model_input": "scaler.transform(chromagrams)[..., None]",
        "split": record.get("split"),
        "split_seed": record.get("seed"),
        **extra,
    }

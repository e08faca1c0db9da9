"""Features at scale: the chunked layout, streamed statistics, streamed training and prediction.

The chunked layout must give the npz's values byte for byte; the scaler
fitted in a streaming pass the same mean and std bit for bit; training
streamed from chunks the same model as in memory (same seed).  Memory
flatness is measured by ``bench/bench_streaming.py``, not here.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import extract_features
import prepare_training
import train
from instrument_classifier import feature_extraction
from instrument_classifier.chunked_array import ChunkWriter, open_chunked
from instrument_classifier.cli import UserError
from instrument_classifier.feature_store import CHROMAGRAMS_DIR, CHROMAGRAMS_NPZ, FEATURES_DIR, load_features
from instrument_classifier.features import ChromagramExtractor
from instrument_classifier.scaling import ChromagramScaler
from instrument_classifier.streaming import ChromagramBatches, EpochOrder

CHUNK = 16  # rows per shard in these tests: the 56 tiny clips make 4 chunks, the last one short


@pytest.fixture(scope="module")
def both_layouts(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """Two copies of the tiny dataset: features as one npz, and chunked (shards of CHUNK clips)."""
    root = tmp_path_factory.mktemp("streaming")
    in_memory, chunked = root / "npz", root / "chunked"
    shutil.copytree(tiny_dataset, in_memory)
    shutil.copytree(tiny_dataset, chunked)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feature_extraction, "READ_CHUNK", CHUNK)
        assert extract_features.main([str(in_memory), "-q", "-j", "1"]) == 0
        assert extract_features.main([str(chunked), "-q", "-j", "1", "--layout", "chunked"]) == 0
    return in_memory, chunked


def test_chunked_features_equal_the_npz_byte_for_byte(both_layouts):
    in_memory, chunked = both_layouts
    assert (in_memory / FEATURES_DIR / CHROMAGRAMS_NPZ).is_file()
    assert not (chunked / FEATURES_DIR / CHROMAGRAMS_NPZ).exists()
    assert sorted(p.name for p in (chunked / FEATURES_DIR / CHROMAGRAMS_DIR).iterdir()) == [
        "00000.npy", "00001.npy", "00002.npy", "00003.npy", "index.json", "sample_id.npy"]
    x, ids, params = load_features(in_memory)
    lazy, lazy_ids, lazy_params = load_features(chunked)
    assert lazy.shape == x.shape and len(lazy) == len(x) and lazy.dtype == x.dtype
    assert np.asarray(lazy).tobytes() == x.tobytes()
    assert np.array_equal(ids, lazy_ids) and params == lazy_params
    rows = np.array([55, 3, 17, 16, 15, 0, 3])  # any order, repeats, across chunks
    assert np.array_equal(lazy[rows], x[rows]) and np.array_equal(lazy[5], x[5])
    assert np.array_equal(lazy[10:40], x[10:40]) and np.array_equal(lazy[x[:, 0, 0] > 0], x[x[:, 0, 0] > 0])
    record = json.loads((chunked / FEATURES_DIR / "features.json").read_text())
    assert record["layout"] == "chunked" and record["n_clips"] == 56


def test_features_up_to_date_change_layout_when_asked_and_add_a_plot(both_layouts, tmp_path, capsys):
    """Up-to-date npz features stayed npz under --layout chunked, and --plot drew nothing, each "up to date"."""
    dataset = tmp_path / "dataset"
    shutil.copytree(both_layouts[0], dataset)
    before = load_features(dataset)[0].tobytes()
    assert extract_features.main([str(dataset), "-j", "1", "--layout", "chunked"]) == 0
    assert "up to date" not in capsys.readouterr().out
    features = dataset / FEATURES_DIR
    assert (features / CHROMAGRAMS_DIR).is_dir() and not (features / CHROMAGRAMS_NPZ).exists()
    assert np.asarray(load_features(dataset)[0]).tobytes() == before
    assert not (dataset / FEATURES_DIR / "chromagrams.png").exists()
    assert extract_features.main([str(dataset), "-j", "1", "--plot"]) == 0
    assert "up to date" in capsys.readouterr().out  # nothing recomputed, the picture drawn
    assert (dataset / FEATURES_DIR / "chromagrams.png").is_file()


def test_layout_by_size(monkeypatch):
    extractor = ChromagramExtractor()
    assert feature_extraction.choose_layout(26_000, extractor) == "npz"
    assert feature_extraction.choose_layout(27_000, extractor) == "chunked"
    assert feature_extraction.choose_layout(10, extractor, "chunked") == "chunked"
    with pytest.raises(UserError, match="unknown feature layout"):
        feature_extraction.choose_layout(10, extractor, "zarr")


@pytest.mark.parametrize("n, block", [(1, 128), (57, 128), (57, 5000), (300, 77_777)])
def test_streamed_scaler_is_bit_for_bit_the_in_memory_one(n, block):
    rng = np.random.default_rng(n)
    x = (rng.random((n, 44, 115)) ** 9).astype(np.float32)  # many tiny values: summation order shows
    rows = np.sort(rng.choice(n, max(1, 2 * n // 3), replace=False))
    reference = ChromagramScaler().fit(x[rows])
    streamed = ChromagramScaler().fit_rows(x, rows, block_values=block)
    assert (streamed.mean_, streamed.std_) == (reference.mean_, reference.std_)


def test_a_scaler_of_nearly_constant_chromagrams_divides_by_one_and_loads_again():
    """A std of 3e-7 was stored by prepare_training.py, then refused when read (a model folder's must be >= 1e-6)."""
    x = np.zeros((2000, 44, 115), np.float32)
    x[0, 0, 0] = 1e-3
    for scaler in (ChromagramScaler().fit(x), ChromagramScaler().fit_rows(x, np.arange(len(x)))):
        assert scaler.std_ == 1.0 and ChromagramScaler.from_dict(scaler.to_dict()).std_ == 1.0


def test_chunk_writer_refuses_a_partial_chunk_and_an_incomplete_array(tmp_path):
    out = ChunkWriter(tmp_path / "a", row_shape=(2,), dtype="float32", n_rows=5, chunk_rows=2)
    for rows, n in ((slice(1, 3), 2), (slice(0, 1), 1), (slice(2, 5), 3)):  # off a chunk's start, short, long
        with pytest.raises(ValueError, match="not one whole chunk"):
            out[rows] = np.zeros((n, 2), np.float32)
    with pytest.raises(ValueError, match="expected"):
        out[0:2] = np.zeros((2, 3), np.float32)
    out[4:5] = np.ones((1, 2), np.float32)
    with pytest.raises(ValueError, match="never written"):
        out.close()


def _damage(folder: Path, how: str) -> None:
    chunk = folder / "00001.npy"
    if how == "missing":
        chunk.unlink()
    elif how == "truncated":
        chunk.write_bytes(chunk.read_bytes()[:-100])
    elif how == "altered":  # same size, a valid header, other numbers
        data = bytearray(chunk.read_bytes())
        data[-8:] = b"\x00\x00\x80\x3f" * 2
        chunk.write_bytes(bytes(data))
    elif how == "reshaped":  # a valid .npy of another shape, index patched to match its size and hash
        from instrument_classifier.chunked_array import file_sha256

        np.save(chunk, np.zeros((CHUNK, 44, 116), np.float32))
        index = json.loads((folder / "index.json").read_text())
        index["chunks"][1].update(bytes=chunk.stat().st_size, sha256=file_sha256(chunk))
        (folder / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("how, message", [("missing", "00001.npy is missing"),
                                          ("truncated", "00001.npy changed since it was written"),
                                          ("altered", "00001.npy changed since it was written"),
                                          ("reshaped", "the index expects")])
def test_a_damaged_chunk_is_one_line_and_recomputed(both_layouts, tmp_path, capsys, how, message):
    dataset = tmp_path / "dataset"
    shutil.copytree(both_layouts[1], dataset)
    _damage(dataset / FEATURES_DIR / CHROMAGRAMS_DIR, how)
    with pytest.raises(UserError, match=message):
        load_features(dataset)
    status = prepare_training.main([str(dataset)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    # The freshness check notices it: extracting again recomputes the damaged store.
    assert extract_features.main([str(dataset), "-q", "--layout", "chunked"]) == 0
    assert np.asarray(load_features(dataset)[0]).tobytes() == load_features(both_layouts[0])[0].tobytes()


def test_open_chunked_refuses_a_missing_index(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError, match="has no index.json"):
        open_chunked(tmp_path / "a")


def _train(dataset: Path, models: Path) -> Path:
    assert prepare_training.main([str(dataset), "--overwrite"]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # Batches of 10: the 32 training clips end in a partial batch, as a real split does (see
        # test_streamed_training_equals_in_memory_training).
        assert train.main([str(dataset), "--epochs", "2", "--seed", "5", "--batch-size", "10", "-q",
                           "--no-evaluate", "--models-dir", str(models)]) == 0
    return Path(out.getvalue().strip().splitlines()[-1])


def test_streamed_training_equals_in_memory_training(both_layouts, tmp_path):
    """Same seed, same weights, curves and predictions, bit for bit: in memory or chunked, one path."""
    in_memory, chunked = both_layouts
    first, second = _train(in_memory, tmp_path / "a"), _train(chunked, tmp_path / "b")
    prepared = [json.loads((d / "training-data" / "preprocessing.json").read_text()) for d in both_layouts]
    assert prepared[0]["scaler"] == prepared[1]["scaler"]
    assert (first / "predictions.csv").read_bytes() == (second / "predictions.csv").read_bytes()
    curves = [pd.read_csv(d / "learning_curves.csv").drop(columns=["seconds"]) for d in (first, second)]
    pd.testing.assert_frame_equal(curves[0], curves[1], check_exact=True)
    models = [keras.saving.load_model(d / "model.keras", compile=False) for d in (first, second)]
    for a, b in zip(models[0].get_weights(), models[1].get_weights()):
        assert np.array_equal(a, b)

    # Prediction over chunked features (evaluate.py --dataset) streams, with the same probabilities.
    from instrument_classifier.model_bundle import load_model_dir

    bundle = load_model_dir(second)
    rows = np.array([3, 40, 7, 55])
    in_memory_proba = bundle.predict_proba(load_features(in_memory)[0], rows=rows)
    assert np.array_equal(bundle.predict_proba(load_features(chunked)[0], rows=rows), in_memory_proba)
    # Other batches, other sums inside TensorFlow's kernels: the same to float precision.
    assert np.allclose(bundle.predict_proba(load_features(chunked)[0], rows=rows, batch_size=3), in_memory_proba,
                       rtol=1e-5, atol=1e-7)


def test_each_epoch_visits_the_clips_in_its_own_order():
    """Keras's in-memory fit(shuffle=True) visited them in one order every epoch on TensorFlow."""
    from instrument_classifier.streaming import keras_input

    chromagrams, targets = np.zeros((10, 44, 115), dtype=np.float32), np.arange(10, dtype=np.float32)[:, None]
    batches = ChromagramBatches(chromagrams, ChromagramScaler().fit(chromagrams + 1), targets=targets,
                                batch_size=4, shuffle=True, seed=5)
    orders = [batches.order(epoch) for epoch in range(3)]
    assert all(sorted(order) == list(range(10)) for order in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    again = ChromagramBatches(chromagrams, batches.scaler, targets=targets, batch_size=4, shuffle=True, seed=5)
    assert np.array_equal(again.order(1), orders[1])  # same seed, same orders
    # What fit reads, on this backend: three epochs of three batches, each epoch in its order.
    served = []

    class Recorded(ChromagramBatches):
        def batch(self, epoch, index):
            x, y = super().batch(epoch, index)
            served.append(y[:, 0])
            return x, y

    recorded = Recorded(chromagrams, batches.scaler, targets=targets, batch_size=4, shuffle=True, seed=5)
    inputs = keras.Input((44, 115, 1))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(keras_input(recorded, epochs=3), steps_per_epoch=len(recorded), epochs=3, shuffle=False, verbose=0,
              callbacks=[EpochOrder(recorded)])
    assert len(served) == 9 + (keras.backend.backend() != "tensorflow")  # elsewhere Keras first peeks at batch 0
    served = served[-9:]
    for epoch in range(3):
        assert np.array_equal(np.concatenate(served[3 * epoch:3 * epoch + 3]), orders[epoch])


def test_batches_read_the_rows_asked(both_layouts):
    x, _, _ = load_features(both_layouts[0])
    lazy, _, _ = load_features(both_layouts[1])
    scaler = ChromagramScaler().fit(x)
    rows = np.array([50, 2, 33, 7, 19])
    batches = ChromagramBatches(lazy, scaler, rows=rows, targets=np.arange(5), batch_size=2)
    assert len(batches) == 3 and batches.input_shape == (44, 115, 1)
    got = np.concatenate([batches[i][0] for i in range(3)])
    assert np.array_equal(got, scaler.transform(x[rows])[..., None])
    assert np.concatenate([batches[i][1] for i in range(3)]).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(IndexError):
        batches[3]
    for empty in ([], np.array([], dtype=int), np.zeros(len(lazy), dtype=bool)):  # no rows: an empty array
        assert lazy[empty].shape == (0, 44, 115) and lazy[empty].dtype == x.dtype
    # Rows past either end are an IndexError, as numpy's (a row read modulo the length would be another clip's).
    n = len(lazy)
    assert np.array_equal(lazy[-1], x[-1]) and np.array_equal(lazy[[0, -n]], x[[0, -n]])
    for outside in (n, -n - 1, [0, n], [-n - 1]):
        with pytest.raises(IndexError):
            x[outside]
        with pytest.raises(IndexError):
            lazy[outside]


def test_a_failed_chunked_extraction_leaves_the_features_as_they_were(both_layouts, tmp_path, capsys):
    """A clip that breaks the 3rd shard: the shards done so far were written, but only in a hidden folder."""
    import soundfile as sf

    dataset = tmp_path / "dataset"
    shutil.copytree(both_layouts[1], dataset)
    features_dir = dataset / FEATURES_DIR
    before = {p.relative_to(features_dir): p.read_bytes() for p in features_dir.rglob("*") if p.is_file()}
    clip = dataset / pd.read_csv(dataset / "parameters.csv")["audio_file"].iloc[40]
    sf.write(clip, np.zeros(1000, np.float32), 44100)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feature_extraction, "READ_CHUNK", CHUNK)
        assert extract_features.main([str(dataset), "--overwrite", "-q", "--layout", "chunked"]) == 2
    assert "expected 88200" in capsys.readouterr().err
    after = {p.relative_to(features_dir): p.read_bytes() for p in features_dir.rglob("*") if p.is_file()}
    assert after == before


def test_a_splits_arrays_are_what_training_streams(tiny_model_dir):
    """TrainingData.arrays, the in-memory route a notebook takes, holds what the batches of training hold."""
    from instrument_classifier.training_data import load_training_data

    data = load_training_data(tiny_model_dir.parent.parent)
    for split in ("train", "valid"):
        x, y = data.arrays(split)
        rows = np.flatnonzero(data.split == split)
        batches = ChromagramBatches(data.chromagrams, data.scaler, rows=rows, targets=data.y[rows], batch_size=7)
        streamed = [batches[i] for i in range(len(batches))]
        np.testing.assert_array_equal(x, np.concatenate([b[0] for b in streamed]))
        np.testing.assert_array_equal(y, np.concatenate([b[1] for b in streamed]))
        assert x.shape == (len(rows), *data.chromagrams.shape[1:], 1) and abs(float(x.mean())) < 5
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        data.arrays("bogus")

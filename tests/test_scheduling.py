"""Generation and features on Dask: a real cluster on loopback gives the local run's bytes, lost workers, bad addresses.

The cluster is real: a ``dask scheduler`` and ``dask worker`` processes
talking TCP on 127.0.0.1 (:func:`instrument_classifier.loopback_cluster.loopback_cluster`),
started once for the module.  Small shards (4 clips) give each worker several tasks.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

import numpy as np

import extract_features
import generate_audio_samples
from conftest import make_dataset
from instrument_classifier import feature_extraction, feature_store, generation, scheduling
from instrument_classifier.cli import UserError
from instrument_classifier.defaults import REPO_DIR
from instrument_classifier.loopback_cluster import loopback_cluster

COUNT, SEED, SHARD = 24, 3, 4


@pytest.fixture(scope="module")
def cluster():
    with loopback_cluster(2) as running:
        yield running


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    """The default local run: this machine's worker processes."""
    return make_dataset(tmp_path_factory.mktemp("local") / "dataset", count=COUNT, seed=SEED, jobs=2,
                        shard_size=SHARD)


def assert_same_bytes(one: Path, two: Path) -> None:
    assert filecmp.cmp(one / "parameters.csv", two / "parameters.csv", shallow=False)
    for folder in ("audio", "midi"):
        names = sorted(p.name for p in (one / folder).iterdir())
        assert names == sorted(p.name for p in (two / folder).iterdir()) and len(names) == COUNT
        _, mismatch, errors = filecmp.cmpfiles(one / folder, two / folder, names, shallow=False)
        assert not mismatch and not errors


def test_a_cluster_of_two_workers_writes_the_local_run_s_bytes(cluster, local_dataset, tmp_path):
    remote = make_dataset(tmp_path / "dataset", count=COUNT, seed=SEED, scheduler=cluster.address, shard_size=SHARD)
    assert_same_bytes(local_dataset, remote)
    record = json.loads((remote / "generation.json").read_text())
    assert record["scheduler"] == cluster.address and record["jobs"] is None
    assert len(record["workers"]) == 2 and sum(w["tasks"] for w in record["workers"]) == COUNT // SHARD
    local = json.loads((local_dataset / "generation.json").read_text())
    assert local["scheduler"] == "local" and local["jobs"] == 2 and len(local["workers"]) == 2


def test_a_worker_killed_mid_run_has_its_tasks_retried_same_bytes(cluster, local_dataset, tmp_path):
    """SIGKILL a worker while it holds a task: the scheduler gives the task to another, the bytes do not change."""
    import distributed

    doomed = cluster.add_worker()
    out = tmp_path / "dataset"
    failure = []

    def generate():
        try:
            make_dataset(out, count=COUNT, seed=SEED, scheduler=cluster.address, shard_size=SHARD)
        except BaseException as error:  # reported by the test thread
            failure.append(error)

    run = threading.Thread(target=generate)
    with distributed.Client(cluster.address, set_as_default=False) as client:
        doomed_address = next(a for a, info in client.scheduler_info(n_workers=-1)["workers"].items()
                              if info["name"] == f"worker-{len(cluster.workers) - 1}")
        run.start()
        deadline = time.monotonic() + 60
        while not client.processing(workers=[doomed_address]).get(doomed_address) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.processing(workers=[doomed_address])[doomed_address], "the worker never got a task"
        doomed.kill()
        doomed.wait()
    run.join(timeout=120)
    assert not failure and not run.is_alive()
    assert_same_bytes(local_dataset, out)
    assert not [p for folder in ("audio", "midi") for p in (out / folder).iterdir() if p.name.startswith(".")]


def test_an_unreachable_scheduler_is_one_line_within_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scheduling, "CONNECT_SECONDS", 1)
    started = time.monotonic()
    status = generate_audio_samples.main(["-c", "2", "-o", str(tmp_path / "dataset"), "-q",
                                          "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 1 s" in err
    assert time.monotonic() - started < 10 and list(tmp_path.iterdir()) == []


def test_a_malformed_scheduler_address_is_one_line(tmp_path, capsys):
    status = generate_audio_samples.main(["-c", "2", "-o", str(tmp_path / "dataset"), "-q",
                                          "--scheduler", "no-port-here"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "invalid Dask scheduler address" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", [generate_audio_samples, extract_features])
def test_jobs_with_a_scheduler_is_one_line_not_silently_ignored(script, cluster, local_dataset, tmp_path, capsys):
    args = (["-c", "2", "-o", str(tmp_path / "dataset")] if script is generate_audio_samples
            else [str(shutil.copytree(local_dataset, tmp_path / "dataset"))])
    assert script.main([*args, "-q", "-j", "2", "--scheduler", cluster.address]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--jobs counts this machine's workers" in err, err
    written = "audio" if script is generate_audio_samples else "features"
    assert not (tmp_path / "dataset" / written).exists()


def test_workers_that_cannot_see_the_output_folder_are_named(cluster, tmp_path, capsys, monkeypatch):
    """Each worker checks the folder before any work; one that cannot write there stops the run in one line."""
    import distributed

    with distributed.Client(cluster.address, set_as_default=False) as client:
        answers = client.run(generation.worker_problem, Path("/nonexistent/dataset"), ())
    assert len(answers) == 2 and all("cannot write to /nonexistent/dataset" in answer and
                                     "every worker sees" in answer for answer in answers.values())
    # The same answer from a worker ends the command: one line naming the worker, nothing written.
    real = generation.worker_problem
    monkeypatch.setattr(generation, "worker_problem",
                        lambda out_dir, fonts: real(Path("/nonexistent") / out_dir.name, fonts))
    status = generate_audio_samples.main(["-c", "2", "-j", "1", "-o", str(tmp_path / "dataset"), "-q"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Dask worker inproc://" in err
    assert "cannot write to /nonexistent/.dataset." in err and list(tmp_path.iterdir()) == []


def test_progress_locally_and_the_dashboard_address_on_a_cluster(cluster, tmp_path, capsys):
    """A bar over the clips as before; on a cluster, first a line with its size and dashboard address."""
    assert generate_audio_samples.main(["-c", "3", "-j", "2", "-o", str(tmp_path / "local")]) == 0
    err = capsys.readouterr().err
    assert "generating: 100%" in err and "3/3" in err and "dask:" not in err
    assert generate_audio_samples.main(["-c", "3", "-o", str(tmp_path / "cluster"), "--scheduler",
                                        cluster.address]) == 0
    first, *rest = capsys.readouterr().err.splitlines()
    assert first.startswith(f"dask: scheduler {cluster.address}, 2 workers on 1 host, 2 threads; dashboard http")
    assert "generating: 100%" in rest[-1]


@pytest.mark.parametrize("layout", ["npz", "chunked"])
def test_features_on_a_cluster_equal_the_local_ones(cluster, local_dataset, tmp_path, monkeypatch, layout):
    """Shards of 4 clips as Dask tasks on two remote workers: the same chromagrams, bit for bit, as locally."""
    monkeypatch.setattr(feature_extraction, "READ_CHUNK", 4)
    here, there = (shutil.copytree(local_dataset, tmp_path / name) for name in ("here", "there"))
    assert extract_features.main([str(here), "-q", "-j", "2", "--layout", layout]) == 0
    assert extract_features.main([str(there), "-q", "--layout", layout, "--scheduler", cluster.address]) == 0
    (local, ids, _), (remote, remote_ids, _) = (feature_store.load_features(d) for d in (here, there))
    assert np.array_equal(ids, remote_ids) and len(ids) == COUNT
    assert np.asarray(local[:]).tobytes() == np.asarray(remote[:]).tobytes()
    record = json.loads((there / "features" / "features.json").read_text())
    assert record["scheduler"] == cluster.address and len(record["workers"]) == 2
    assert sum(worker["tasks"] for worker in record["workers"]) == COUNT // 4
    assert json.loads((here / "features" / "features.json").read_text())["scheduler"] == "local"


def test_features_with_an_unreachable_scheduler_are_one_line_and_write_nothing(local_dataset, tmp_path, capsys,
                                                                               monkeypatch):
    monkeypatch.setattr(scheduling, "CONNECT_SECONDS", 1)
    dataset = shutil.copytree(local_dataset, tmp_path / "dataset")
    status = extract_features.main([str(dataset), "-q", "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "cannot reach the Dask scheduler" in err, err
    assert not (dataset / "features").exists()


@pytest.fixture(scope="module")
def other_checkout_cluster(tmp_path_factory):
    """A cluster whose one worker imports this project from another checkout, one source line different."""
    checkout = tmp_path_factory.mktemp("checkout")
    shutil.copytree(REPO_DIR / "instrument_classifier", checkout / "instrument_classifier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_DIR / "instruments.csv", checkout)
    shutil.copytree(REPO_DIR / "data", checkout / "data", ignore=shutil.ignore_patterns("working"))
    with open(checkout / "instrument_classifier" / "features.py", "a") as source:
        source.write("# a later commit\n")
    with loopback_cluster(0) as running:
        running.add_worker(project_dir=checkout)
        yield running


def test_a_scheduler_that_cannot_import_the_project_is_one_line_before_any_work(tmp_path, capsys):
    """The README's recipe started the scheduler without PYTHONPATH: it unpickles every task's graph, and
    each run failed with a traceback about deserialising it."""
    with loopback_cluster(1, scheduler_imports_project=False) as running:
        status = generate_audio_samples.main(["-c", "4", "-o", str(tmp_path / "dataset"), "-q",
                                              "--scheduler", running.address])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "cannot import instrument_classifier: start it as the workers, in the project's folder with " \
           "PYTHONPATH=$PWD" in err
    assert list(tmp_path.iterdir()) == []


def test_a_worker_on_another_checkout_is_refused_before_any_work(other_checkout_cluster, tmp_path, capsys):
    """Same seed, same bytes needs the same code on every machine: the run names the worker and what differs."""
    status = generate_audio_samples.main(["-c", "4", "-o", str(tmp_path / "dataset"), "-q",
                                          "--scheduler", other_checkout_cluster.address])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "runs other software than this machine: project " in err and "numpy" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_task_result_from_another_checkout_stops_the_run(other_checkout_cluster):
    """A worker that joins after the start is checked by its first result, which is not used."""
    import distributed

    used = []
    with distributed.Client(other_checkout_cluster.address, set_as_default=False) as client:
        with pytest.raises(UserError, match="runs other software than this machine: project "):
            scheduling.run_tasks(client, len, [("abc",)], on_result=lambda worker, result: used.append(result))
    assert used == []
    assert scheduling.stack_differences({**scheduling.software_stack(), "numpy": "1.0"}) == [
        f"numpy 1.0 (here {scheduling.software_stack()['numpy']})"]

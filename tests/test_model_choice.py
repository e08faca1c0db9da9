"""Which model a stage uses: leaderboard.py's options, and the default model of the other stages.

predict.py, predict_webapp.py and ``evaluate.py --best`` use, when no model
is named, the best family model of the default dataset (README, Stage 7).
They are run here as a user runs them: the real scripts, in a copy of the
checkout whose default dataset (``defaults.DEFAULT_DATASET_DIR``) is the
session's tiny dataset with copies of the tiny model, ranked by hand.  The
user's own ``data/working`` is never read.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import leaderboard
from conftest import request, run_script
from instrument_classifier.defaults import DEFAULT_DATASET_DIR

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = DEFAULT_DATASET_DIR.relative_to(REPO)  # README: the dataset every later stage reads by default

# (folder name, target, split, validation error), oldest first: ranked C, B, E, D, A.
MODELS = [
    ("20990101-000000-relative-harmonic-s1", "family", "random", 0.5),      # A
    ("20990101-000001-relative-harmonic-s2", "family", "random", 0.1),      # B: the best family model
    ("20990101-000002-relative-harmonic-s3", "instrument", "random", 0.0),  # C: better, another target
    ("20990101-000003-relative-harmonic-s4", "family", "instrument", 0.3),  # D
    ("20990101-000004-relative-harmonic-s5", "family", "random", 0.2),      # E: the newest
]
A, B, C, D, E = (name for name, *_ in MODELS)


def copy_model(source: Path, target: Path, *, target_name: str, split: str, valid_error: float, created: str,
               dataset: Path | None = None) -> Path:
    """A copy of a finished model folder, as train.py would have written it with these properties."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("evaluation"))
    config = json.loads((target / "config.json").read_text())
    config.update(model_id=target.name, target=target_name, split=split, created=created)
    if dataset is not None:
        config["dataset"] = str(dataset)
    (target / "config.json").write_text(json.dumps(config))
    metrics = pd.read_csv(target / "final_metrics.csv")
    metrics.loc[metrics["split"] == "valid", "error"] = valid_error
    metrics.to_csv(target / "final_metrics.csv", index=False)
    return target


def fill_models_dir(tiny_model_dir: Path, models: Path, dataset: Path | None = None) -> Path:
    for i, (name, target_name, split, error) in enumerate(MODELS):
        copy_model(tiny_model_dir, models / name, target_name=target_name, split=split, valid_error=error,
                   created=f"2099-01-01T00:00:0{i}", dataset=dataset)
    return models


# ---------------------------------------------------------------------------
# leaderboard.py's options


@pytest.fixture(scope="module")
def models_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return fill_models_dir(tiny_model_dir, tmp_path_factory.mktemp("leaderboard") / "models")


def listed(out: str) -> tuple[list[str], list[str]]:
    """(model ids of the table in order, lines of the "latest:" part) of leaderboard.py's output."""
    table, _, latest = out.partition("\nlatest:\n")
    ids = [name for line in table.splitlines()[2:] for name, *_ in MODELS if name in line]
    return ids, [line.strip() for line in latest.splitlines() if line.strip()]


def test_leaderboard_ranks_every_model_by_validation_error(models_dir, capsys):
    status, out, _ = run_script(leaderboard, [models_dir], capsys)
    assert status == 0 and out.startswith(f"best 5 of 5 models in {models_dir}")
    ids, latest = listed(out)
    assert ids == [C, B, E, D, A]
    assert [line.split(", test error")[0] for line in latest] == [f"{E}: rank 3 of 5 (valid error 20.00%",
                                                                  f"{D}: rank 4 of 5 (valid error 30.00%",
                                                                  f"{C}: rank 1 of 5 (valid error 0.00%"]


@pytest.mark.parametrize("argv, expected, latest", [
    (["--top", "2"], [C, B], [E, D, C]),
    (["--latest", "1"], [C, B, E, D, A], [E]),
    (["--latest", "0"], [C, B, E, D, A], []),
    (["--target", "family"], [B, E, D, A], [E, D, B]),
    (["--target", "instrument"], [C], [C]),
    (["--split", "instrument"], [D], [D]),
    (["--target", "family", "--split", "random", "--top", "1", "--latest", "1"], [B], [E]),
])
def test_leaderboard_options_choose_the_rows(models_dir, capsys, argv, expected, latest):
    status, out, _ = run_script(leaderboard, [models_dir, *argv], capsys)
    assert status == 0
    ids, latest_lines = listed(out)
    assert ids == expected
    assert [line.split(":")[0] for line in latest_lines] == latest
    shown = len(expected)
    assert out.startswith(f"best {shown} of ")
    # Ranks count within the models the options keep: the best family model is first of 4, not second of 5.
    kept = {"--target": None, "--split": None}
    for option in kept:
        if option in argv:
            kept[option] = argv[argv.index(option) + 1]
    among = [name for name, target, split, _ in MODELS
             if kept["--target"] in (None, target) and kept["--split"] in (None, split)]
    ranked = sorted(among, key=lambda name: next(error for n, *_, error in MODELS if n == name))
    assert out.splitlines()[2].split()[0] == "1"
    for line in latest_lines:
        assert f": rank {ranked.index(line.split(':')[0]) + 1} of {len(among)} " in line, line


@pytest.mark.parametrize("argv, expected", [
    ([], B),                                   # the default model: the best of target family, random split
    (["--target", "instrument"], C),
    (["--split", "instrument"], D),
    (["--target", "family", "--split", "random"], B),
])
def test_leaderboard_best_of_a_target_and_split(models_dir, capsys, argv, expected):
    status, out, _ = run_script(leaderboard, [models_dir, "--best", *argv], capsys)
    assert status == 0 and out.strip() == str(models_dir / expected)


def test_leaderboard_filter_that_matches_nothing_is_one_line(models_dir, capsys):
    status, _, err = run_script(leaderboard, [models_dir, "--split", "soundfont"], capsys)
    assert status == 2 and err.count("\n") == 1 and "no finished models" in err
    # Options of the table, given to --best, were silently ignored.
    for shaping in (["--top", "3"], ["--latest", "1"]):
        status, out, err = run_script(leaderboard, [models_dir, "--best", *shaping], capsys)
        assert status == 2 and out == "" and err.count("\n") == 1 and "--best prints only the best model's folder" in err


def test_ties_go_to_the_lower_validation_loss_and_no_error_ranks_last(tiny_model_dir, tmp_path, capsys):
    """README, Stage 7: ranked by validation error, then loss; a model without a validation error is never best.

    Each column shows its own split's figure: the test AUC is not the validation AUC.
    """
    models = tmp_path / "models"
    for i, (name, error, loss) in enumerate(((A, 0.1, 0.9), (B, 0.1, 0.4), (C, float("nan"), 0.1))):
        target = copy_model(tiny_model_dir, models / name, target_name="family", split="random", valid_error=error,
                            created=f"2099-01-01T00:00:0{i}")
        metrics = pd.read_csv(target / "final_metrics.csv")
        metrics.loc[metrics["split"] == "valid", ["loss", "auc"]] = [loss, 0.5]
        metrics.loc[metrics["split"] == "test", "auc"] = 0.1234
        metrics.to_csv(target / "final_metrics.csv", index=False, na_rep="nan")
    status, out, _ = run_script(leaderboard, [models], capsys)
    assert status == 0 and listed(out)[0] == [B, A, C]
    assert all(line.endswith("0.1234") for line in out.splitlines()[2:5])
    assert f"{C}: rank 3 of 3 (valid error -, test error" in out
    assert run_script(leaderboard, [models, "--best"], capsys)[1] == f"{models / B}\n"


def test_models_validated_on_other_clips_are_named_and_best_says_so(tiny_model_dir, tmp_path, capsys):
    """Trained from another split of the dataset, a model's validation error is of other clips."""
    models = tmp_path / "models"
    for name, error in ((A, 0.2), (B, 0.1)):
        copy_model(tiny_model_dir, models / name, target_name="family", split="random", valid_error=error,
                   created="2099-01-01T00:00:00")
    status, out, err = run_script(leaderboard, [models], capsys)
    assert status == 0 and "valid_set" not in out and err == ""
    assert run_script(leaderboard, [models, "--best"], capsys) == (0, f"{models / B}\n", "")

    other = copy_model(tiny_model_dir, models / E, target_name="family", split="random", valid_error=0.05,
                       created="2099-01-01T00:00:01")
    predictions = pd.read_csv(other / "predictions.csv")
    first_valid, first_train = (predictions.index[predictions["split"] == name][0] for name in ("valid", "train"))
    predictions.loc[[first_valid, first_train], "split"] = ["train", "valid"]  # another split of the same clips
    predictions.to_csv(other / "predictions.csv", index=False)
    status, out, err = run_script(leaderboard, [models], capsys)
    assert status == 0 and err == ""
    header, *rows = out.partition("\nlatest:")[0].splitlines()[1:5]
    assert header.split()[-1] == "valid_set"
    sets = {name: row.split()[-1] for row in rows for name in (A, B, E) if name in row}
    assert sets[A] == sets[B] != sets[E]
    assert "validated on 2 different sets of clips" in out
    status, out, err = run_script(leaderboard, [models, "--best"], capsys)
    assert status == 0 and out == f"{models / E}\n"
    assert err.count("\n") == 1 and "were validated on 2 different sets of clips" in err


# ---------------------------------------------------------------------------
# The default model, in a checkout of its own


def make_checkout(path: Path) -> Path:
    """The scripts, the package and the shipped tables of this checkout, copied to ``path`` (no data/working)."""
    path.mkdir(parents=True)
    for item in REPO.iterdir():
        if item.suffix in (".py", ".csv") and item.is_file():
            shutil.copy2(item, path / item.name)
    shutil.copytree(REPO / "instrument_classifier", path / "instrument_classifier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (path / "data").mkdir()
    for item in (REPO / "data").glob("*.csv"):
        shutil.copy2(item, path / "data" / item.name)
    return path


@pytest.fixture(scope="module")
def checkout(tiny_model_dir, tmp_path_factory) -> Path:
    """A checkout whose default dataset is the tiny one, with the five models of MODELS."""
    root = make_checkout(tmp_path_factory.mktemp("checkout") / "repo")
    dataset = root / DEFAULT_DATASET
    shutil.copytree(tiny_model_dir.parent.parent, dataset, ignore=shutil.ignore_patterns("models"))
    fill_models_dir(tiny_model_dir, dataset / "models", dataset)
    return root


def run_in(checkout: Path, script: str, *argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(checkout / script), *map(str, argv)], cwd=checkout,
                          capture_output=True, text=True, timeout=timeout)


def test_predict_without_a_model_uses_the_best_family_model(checkout, predictor):
    clip = sorted((checkout / DEFAULT_DATASET / "audio").glob("*.flac"))[0]
    run = run_in(checkout, "predict.py", "--json", clip)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["model_id"] == B
    expected = predictor.predict_file(clip)  # the same weights: the same answer
    assert record["label"] == expected.label
    assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)


def test_web_app_without_a_model_serves_the_best_family_model(checkout):
    process = subprocess.Popen([sys.executable, "predict_webapp.py", "--port", "0"], cwd=checkout,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # Ctrl-C as in a terminal: a background job (as CI may run us) ignores SIGINT.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    answer = None
    try:
        line = process.stdout.readline()  # "serving model <id> on http://127.0.0.1:<port>/ (Ctrl-C to stop)"
        if " on http://" in line:
            answer = request(line.split(" on ")[1].split("/ ")[0], "GET", "/api/model", timeout=30)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    assert line.startswith(f"serving model {B} on http://127.0.0.1:"), (line, err)
    assert answer[0] == 200 and json.loads(answer[2])["model_id"] == B
    assert process.returncode in (0, 130) and "Traceback" not in err, err  # Ctrl-C stops it cleanly


def test_evaluate_best_evaluates_the_best_family_model(checkout):
    run = run_in(checkout, "evaluate.py", "--best", "-q")
    assert run.returncode == 0, run.stderr
    models = checkout / DEFAULT_DATASET / "models"
    assert (models / B / "evaluation" / "index.html").is_file()
    assert [p.name for p in models.iterdir() if (p / "evaluation").exists()] == [B]


def test_without_models_the_default_is_a_one_line_error(tmp_path, tiny_model_dir):
    checkout = make_checkout(tmp_path / "fresh-clone")
    clip = next((tiny_model_dir.parent.parent / "audio").glob("*.flac"))
    for script, argv in (("predict.py", [clip]), ("evaluate.py", ["--best"])):
        run = run_in(checkout, script, *argv)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, (script, run.stderr)
        assert lines[0].startswith(f"{script}: error: ") and str(checkout / DEFAULT_DATASET / "models") in lines[0]
        assert run.stdout == ""

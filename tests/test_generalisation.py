"""Held-out-font evaluation: --split soundfont, error by font and lineage, the generalisation report."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import evaluate
import prepare_training
import train
from conftest import assert_one_line_error, make_dataset, run_script
from instrument_classifier.cli import UserError
from instrument_classifier.feature_extraction import extract_dataset
from instrument_classifier.metrics import error_interval
from instrument_classifier.training_data import load_training_data, soundfont_split

FONTS = ["FluidR3_GM", "TimGM6mb", "sf_GMbank"]


def synthetic_parameters(n_per_font=30, families=("piano", "organ", "guitar")):
    """parameters.csv rows of three fonts: A and B of lineage x, C of lineage y; families in turn."""
    rows = []
    for font, lineage in (("A", "x"), ("B", "x"), ("C", "y")):
        for i in range(n_per_font):
            rows.append({"sample_id": len(rows), "soundfont": font, "lineage": lineage,
                         "family_name": families[i % len(families)]})
    return pd.DataFrame(rows)


def test_soundfont_split_holds_whole_fonts_out():
    parameters = synthetic_parameters()
    labels = parameters["family_name"]
    split = soundfont_split(parameters, labels, test_fonts=["c"], seed=1)
    by_font = pd.crosstab(parameters["soundfont"], split)
    assert by_font.loc["C", "test"] == 30 and by_font.loc["C"].drop("test").sum() == 0
    assert by_font.loc[["A", "B"], "test"].sum() == 0
    assert by_font.loc[["A", "B"], "valid"].sum() == pytest.approx(0.2 * 60, abs=3)  # a share of the others
    # A lineage holds all its fonts out; --valid-fonts holds a whole font out for validation.
    split = soundfont_split(parameters, labels, test_lineages=["x"], valid_fonts=None, seed=1)
    assert set(parameters["soundfont"][split == "test"]) == {"A", "B"}
    split = soundfont_split(parameters, labels, test_fonts=["C"], valid_fonts=["B"])
    assert list(pd.crosstab(parameters["soundfont"], split).idxmax(axis=1)) == ["train", "valid", "test"]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs --test-fonts or --test-lineage"),
    ({"test_fonts": ["Z"]}, "has no SoundFont 'Z' (it has: A, B, C)"),
    ({"test_lineages": ["gs"]}, "has no lineage 'gs'"),
    ({"test_lineages": ["x", "y"]}, "would hold out every font"),
    ({"test_fonts": ["C"], "valid_fonts": ["c"]}, "C would be both test and validation"),  # was "no samples of class"
    ({"test_lineages": ["x"], "valid_fonts": ["A", "C"]}, "A would be both test and validation"),
])
def test_soundfont_split_bad_requests(kwargs, message):
    parameters = synthetic_parameters()
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        soundfont_split(parameters, parameters["family_name"], **kwargs)


@pytest.fixture(scope="module")
def fonts_dataset(tmp_path_factory):
    """168 varied clips over one fluid and two gs fonts, with features."""
    path = make_dataset(tmp_path_factory.mktemp("fonts") / "dataset", count=168, seed=11, soundfonts=FONTS,
                        variation="realistic", jobs=2)
    extract_dataset(path, quiet=True, jobs=1)
    return path


@pytest.fixture(scope="module")
def held_out_model(fonts_dataset, tmp_path_factory):
    """A model trained (2 epochs) on the fluid font only, its test split the gs lineage."""
    prepared = fonts_dataset / "training-data-without-gs"
    assert prepare_training.main([str(fonts_dataset), "--split", "soundfont", "--test-lineage", "gs",
                                  "-o", str(prepared)]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main([str(fonts_dataset), "--training-data", str(prepared), "--epochs", "2", "-q",
                           "--models-dir", str(fonts_dataset / "models-without-gs")]) == 0
    return Path(out.getvalue().strip().splitlines()[-1])


def test_the_test_split_is_the_held_out_lineage(fonts_dataset, held_out_model):
    data = load_training_data(fonts_dataset, fonts_dataset / "training-data-without-gs")
    fonts = data.parameters["soundfont"].to_numpy()
    assert set(fonts[data.split == "test"]) == {"TimGM6mb", "sf_GMbank"}
    assert set(fonts[data.split != "test"]) == {"FluidR3_GM"}
    assert data.record["held_out"]["test_fonts"] == ["TimGM6mb", "sf_GMbank"]


def test_evaluation_reports_the_error_of_every_font(held_out_model):
    table = pd.read_csv(held_out_model / "evaluation" / "error_by_soundfont.csv")
    predictions = pd.read_csv(held_out_model / "predictions.csv")
    tim = predictions[(predictions["split"] == "test") & (predictions["soundfont"] == "TimGM6mb")]
    row = table[(table["split"] == "test") & (table["name"] == "TimGM6mb")].iloc[0]
    assert row["n"] == len(tim) and row["error"] == pytest.approx(1 - tim["correct"].mean())
    lineage = table[(table["group"] == "lineage") & (table["split"] == "test")]
    assert list(lineage["name"]) == ["gs"] and lineage["n"].iloc[0] == (predictions["split"] == "test").sum()
    assert "Error by SoundFont and lineage" in (held_out_model / "evaluation" / "index.html").read_text()


def test_generalisation_report_compares_models_on_unheard_fonts(fonts_dataset, held_out_model, tmp_path, capsys):
    # Another dataset: clean clips of the same fonts, as a second held-out measurement.
    clean = make_dataset(tmp_path / "clean-fonts", count=21, seed=12, soundfonts=FONTS)
    extract_dataset(clean, quiet=True, jobs=1)
    status, out, _ = run_script(evaluate, [held_out_model, "--dataset", clean, "--report", tmp_path / "report",
                                           "-q"], capsys)
    assert status == 0
    table = pd.read_csv(tmp_path / "report" / "generalisation.csv")
    assert list(table["trained_on"]) == ["FluidR3_GM"]
    assert {"held out: TimGM6mb", "held out: sf_GMbank", "held out: gs lineage"} <= set(table.columns)
    assert "held out: FluidR3_GM" not in table.columns  # a font it trained on is not "held out"
    predictions = pd.read_csv(held_out_model / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    assert table["held out: gs lineage"].iloc[0] == pytest.approx(1 - test["correct"].mean(), abs=1e-4)
    assert table["in_distribution_error"].iloc[0] == pytest.approx(
        1 - predictions.loc[predictions["split"] == "valid", "correct"].mean(), abs=1e-4)
    assert table["test_error"].iloc[0] == pytest.approx(1 - test["correct"].mean(), abs=1e-4)
    assert {"clean-fonts: TimGM6mb", "clean-fonts: fluid lineage", "clean-fonts: all"} <= set(table.columns)
    header = (tmp_path / "report" / "generalisation.md").read_text().splitlines()[2]
    assert "| held out: gs lineage |" in header and "| in_distribution_error |" in header
    # Every error with its 95 % interval: in the CSV beside it, in the Markdown in its cell.
    low, high = error_interval(int((~test["correct"]).sum()), len(test))
    assert (table["held out: gs lineage low"].iloc[0], table["held out: gs lineage high"].iloc[0]) == \
        pytest.approx((low, high), abs=1e-4)
    for column in ("in_distribution_error", "test_error", "held out: TimGM6mb", "clean-fonts: all"):
        assert table[f"{column} low"].iloc[0] <= table[column].iloc[0] <= table[f"{column} high"].iloc[0]
    row = (tmp_path / "report" / "generalisation.md").read_text().splitlines()[4]
    assert f"{100 * (1 - test['correct'].mean()):.1f} % ({100 * low:.1f}–{100 * high:.1f})" in row
    assert "low |" not in header
    assert np.isfinite(table.filter(like="clean-fonts").to_numpy(dtype=float)).all()
    # By family, on the fonts the model never heard: its gs test split, and clean-fonts' gs clips.
    families = pd.read_csv(tmp_path / "report" / "generalisation_by_family.csv")
    assert list(families["part"]) == ["held out", "clean-fonts"]
    for family, clips in test.groupby("true"):
        assert families[family].iloc[0] == pytest.approx(1 - clips["correct"].mean(), abs=1e-4)
    # How sure the model was on them: its mean top probability, and how far that is from being right.
    assert families["confidence"].iloc[0] == pytest.approx(test.filter(like="p_").max(axis=1).mean(), abs=1e-4)
    assert 0 <= families["ece"].iloc[0] <= 1 and "| confidence | ece |" in \
        (tmp_path / "report" / "generalisation.md").read_text()
    clean_predictions = pd.read_csv(held_out_model / "evaluation" / "clean-fonts" / "predictions.csv")
    assert families["n"].iloc[1] == (clean_predictions["lineage"] == "gs").sum()
    assert "## By family" in (tmp_path / "report" / "generalisation.md").read_text()
    # By instrument: the worst first, each with the wrong answer it got most often.
    instruments = pd.read_csv(tmp_path / "report" / "generalisation_by_instrument.csv", keep_default_na=False)
    held = instruments[instruments["part"] == "held out"]
    assert list(held["error"]) == sorted(held["error"], reverse=True)
    for row in held.itertuples():
        clips = test[test["instrument_name"] == row.instrument]
        wrong = clips.loc[~clips["correct"], "predicted"]
        assert (row.n, row.family) == (len(clips), clips["true"].iloc[0])
        assert row.error == pytest.approx(len(wrong) / len(clips), abs=1e-4)
        assert row.called == (wrong.value_counts().index[0] if len(wrong) else "")
    assert set(held["instrument"]) == set(test["instrument_name"])
    assert "## The instruments most often wrong" in (tmp_path / "report" / "generalisation.md").read_text()


def test_prepare_soundfont_split_bad_input(fonts_dataset, tmp_path, capsys):
    out = tmp_path / "td"
    cases = [
        (["--split", "soundfont"], "needs --test-fonts or --test-lineage"),
        (["--split", "soundfont", "--test-fonts", "MuseScore_General"], "no SoundFont 'MuseScore_General'"),
        (["--test-fonts", "TimGM6mb"], "go with --split soundfont"),
        (["--split", "soundfont", "--test-lineage", "fluid", "gs"], "would hold out every font"),
        # Options the split would ignore: said, not dropped.
        (["--split", "soundfont", "--test-lineage", "gs", "--test-fraction", "0.5"],
         "--test-fraction does not apply to --split soundfont"),
        (["--split", "soundfont", "--test-fonts", "TimGM6mb", "--valid-fonts", "sf_GMbank", "--valid-fraction", "0.3"],
         "--valid-fraction does not apply with --valid-fonts"),
    ]
    for argv, message in cases:
        assert_one_line_error(*run_script(prepare_training, [fonts_dataset, *argv, "-o", out], capsys)[::2], message)
        assert not out.exists()
    assert_one_line_error(*run_script(prepare_training, [fonts_dataset, "-o", ""], capsys)[::2],
                          "the output folder is an empty path")  # was taken for the current folder


def test_in_distribution_error_counts_only_the_fonts_trained_on():
    """With --valid-fonts the validation split holds a font out: its error was reported as 'in distribution'."""
    from instrument_classifier.generalisation import _in_distribution

    own = pd.DataFrame({"split": ["train", "valid", "valid", "valid", "test"],
                        "soundfont": ["A", "A", "B", "B", "C"], "correct": [True, True, False, False, False]})
    assert list(_in_distribution(own, ["A"])) == [False, True, False, False, False]  # B, held out for validation
    assert not _in_distribution(own, ["D"]).any()


def test_test_fonts_and_a_test_lineage_together_hold_out_both():
    parameters = synthetic_parameters()
    split = soundfont_split(parameters, parameters["family_name"], test_fonts=["A"], test_lineages=["y"], seed=1)
    assert set(parameters["soundfont"][split == "test"]) == {"A", "C"}


def _predictions(correct, **columns):
    """A predictions table of len(correct) clips, sample ids 0.., every clip a piano of font A."""
    n = len(correct)
    table = {"sample_id": range(n), "true": ["piano"] * n, "soundfont": ["A"] * n, "correct": correct}
    return pd.DataFrame({**table, **columns})


def test_paired_comparison_counts_the_clips_only_one_model_gets_wrong():
    from instrument_classifier.generalisation import format_paired, mcnemar_p, paired_table

    # 8 clips only the second model gets wrong, 2 only the first, 5 both, 5 neither.
    first = _predictions([True] * 8 + [False] * 2 + [False] * 5 + [True] * 5)
    second = _predictions([False] * 8 + [True] * 2 + [False] * 5 + [True] * 5)
    table = paired_table([("m1", "held out", first)], [("m2", "held out", second), ("m2", "other", second)])
    assert len(table) == 1  # "other": a part the first model has not scored
    row = table.iloc[0]
    assert (row.model_id, row.baseline, row.n, row.only_model_wrong, row.only_baseline_wrong) == \
        ("m2", "m1", 20, 8, 2)
    assert (row.error, row.baseline_error, row.difference) == pytest.approx((13 / 20, 7 / 20, 6 / 20))
    assert row.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)  # two-sided binomial, 2 or fewer of 10
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(5, 5) == 1.0
    # As the report's Markdown shows it: errors and their difference in percent and points, p to two digits.
    shown = format_paired(table).splitlines()[2]
    assert "| 65.0 % |" in shown and "| 35.0 % |" in shown and "| +30.0 points |" in shown and "| 0.11 |" in shown
    # Only the clips both scored are paired; clips that are not the same under one sample_id are not paired.
    assert paired_table([("m1", "p", first)], [("m2", "p", second.iloc[:10])]).iloc[0].n == 10
    other_clips = second.assign(soundfont="B")
    assert paired_table([("m1", "p", first)], [("m2", "p", other_clips)]).empty
    # Held-out clips of two datasets: one seed gives both the same notes and ids, rendered with other variation.
    first.attrs["clips"], other_dataset = "own:a", second.copy()
    other_dataset.attrs["clips"] = "own:b"
    assert paired_table([("m1", "held out", first)], [("m2", "held out", other_dataset)]).empty
    # A first model with nothing to compare on is the baseline all the same: no pairs, not the second as baseline.
    assert paired_table([], [("m2", "p", second), ("m3", "p", first)]).empty


def test_the_report_shows_the_worst_instruments_of_each_model_and_part():
    from instrument_classifier.generalisation import WORST_INSTRUMENTS_SHOWN, worst_instruments

    instruments = pd.DataFrame({"model_id": ["m1"] * 15 + ["m2"] * 3, "part": ["held out"] * 12 + ["other"] * 6,
                                "instrument": [f"i{k}" for k in range(18)]})
    shown = worst_instruments(instruments)
    assert WORST_INSTRUMENTS_SHOWN == 10
    assert list(shown["instrument"]) == [f"i{k}" for k in [*range(10), 12, 13, 14, 15, 16, 17]]


def test_generalisation_report_pairs_two_models_on_the_same_clips(fonts_dataset, held_out_model, tmp_path, capsys):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train.main([str(fonts_dataset), "--training-data", str(fonts_dataset / "training-data-without-gs"),
                           "--epochs", "2", "-q", "--seed", "1", "--models-dir", str(tmp_path / "models")]) == 0
    second = Path(out.getvalue().strip().splitlines()[-1])
    report = tmp_path / "report"
    status, printed, _ = run_script(evaluate, [held_out_model, second, "--report", report], capsys)
    assert status == 0 and "McNemar" in printed
    paired = pd.read_csv(report / "generalisation_paired.csv")
    both = pd.read_csv(held_out_model / "predictions.csv").query("split == 'test'").merge(
        pd.read_csv(second / "predictions.csv"), on="sample_id", suffixes=("_first", "_second"))
    assert list(paired["part"]) == ["held out"] and paired["n"].iloc[0] == len(both)
    only_second = int((~both["correct_second"] & both["correct_first"]).sum())
    only_first = int((~both["correct_first"] & both["correct_second"]).sum())
    assert (paired["only_model_wrong"].iloc[0], paired["only_baseline_wrong"].iloc[0]) == (only_second, only_first)
    assert "## Each model against the first, on the same clips" in (report / "generalisation.md").read_text()
    # The same folder, one model: no pairs, and no earlier report's pairs left to be read as this one's.
    assert run_script(evaluate, [held_out_model, "--report", report, "-q"], capsys)[0] == 0
    assert not (report / "generalisation_paired.csv").exists()
    assert "against the first" not in (report / "generalisation.md").read_text()


def test_a_report_refuses_datasets_whose_columns_would_be_wrong(fonts_dataset, held_out_model, tmp_path, capsys):
    """Two namesakes shared evaluation/<name>/ (the later's figures under both); the own dataset had none."""
    import shutil

    first, second = tmp_path / "a" / "fonts", tmp_path / "b" / "fonts"
    for copy in (first, second):
        shutil.copytree(fonts_dataset, copy, ignore=shutil.ignore_patterns("models*", "training-data*"))
    before = sorted(p.name for p in (held_out_model / "evaluation").iterdir())
    cases = [([first, second], "two datasets named 'fonts'"), ([first, first], "two datasets named 'fonts'"),
             ([fonts_dataset], "is the dataset"), ]
    for datasets, message in cases:
        status, _, err = run_script(evaluate, [held_out_model, "--dataset", *datasets, "--report", tmp_path / "r"],
                                    capsys)
        assert_one_line_error(status, err, message)
        assert not (tmp_path / "r").exists()
        assert sorted(p.name for p in (held_out_model / "evaluation").iterdir()) == before
    # One model named twice was evaluated twice, and paired with itself.
    status, _, err = run_script(evaluate, [held_out_model, held_out_model / ".", "--dataset", first, "--report",
                                           tmp_path / "r"], capsys)
    assert_one_line_error(status, err, "is given twice: give each model once")
    assert not (tmp_path / "r").exists()
    assert sorted(p.name for p in (held_out_model / "evaluation").iterdir()) == before


def test_a_soundfont_split_takes_any_valid_fraction_and_records_no_test_fraction(fonts_dataset, tmp_path):
    """--valid-fraction 0.85 was refused: the unused test fraction (0.2) was counted against it, and recorded."""
    import json

    out = tmp_path / "td"
    assert prepare_training.main([str(fonts_dataset), "--split", "soundfont", "--test-lineage", "gs",
                                  "--valid-fraction", "0.85", "-o", str(out)]) == 0
    record = json.loads((out / "preprocessing.json").read_text())
    assert (record["valid_fraction"], record["test_fraction"]) == (0.85, None)
    fluid = sum(record["counts"]["train"].values()) + sum(record["counts"]["valid"].values())
    assert sum(record["counts"]["valid"].values()) == pytest.approx(0.85 * fluid, abs=4)


def test_a_reserved_dataset_name_is_refused_before_anything_is_written(held_out_model, fonts_dataset, tmp_path,
                                                                         capsys):
    """`--dataset good errors`: evaluation/good/ was written before 'errors' was refused."""
    import shutil

    good, reserved = tmp_path / "good", tmp_path / "errors"
    for copy in (good, reserved):
        shutil.copytree(fonts_dataset, copy, ignore=shutil.ignore_patterns("models*", "training-data*"))
    status, _, err = run_script(evaluate, [held_out_model, "--dataset", good, reserved], capsys)
    assert_one_line_error(status, err, "a dataset named 'errors' would clash with the report folders")
    assert not (held_out_model / "evaluation" / "good").exists()

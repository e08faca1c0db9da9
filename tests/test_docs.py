"""The docstring examples of the package run and print what they say (doctest).

Every module of ``instrument_classifier`` is searched, so a new example is
run without being listed here.  An example that reads a dataset or a model
of ``data/working/`` (made by ``make pipeline`` or ``make single-font``, never
by the tests) is skipped, with the reason; all others run, in an empty folder
holding ``note.wav`` (a 1 s stereo tone at 48 kHz) and with ``chromagrams`` and
``train_chromagrams`` (random (8, 44, 115) arrays) for the names an example
leaves to its reader.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re

import numpy as np
import pytest
import soundfile as sf

import instrument_classifier

# A user's generated data: tests neither need nor touch it.
USER_DATA = re.compile(r"data/working/[^\"']*")


def docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for module in pkgutil.walk_packages(instrument_classifier.__path__, "instrument_classifier."):
        tests += [test for test in finder.find(importlib.import_module(module.name)) if test.examples]
    return sorted(tests, key=lambda test: test.name)


EXAMPLES = docstring_examples()


def test_the_package_has_runnable_examples():
    runnable = [test.name for test in EXAMPLES if not any(USER_DATA.search(e.source) for e in test.examples)]
    assert {"instrument_classifier.features.ChromagramExtractor",
            "instrument_classifier.instruments.pitch_number"} <= set(runnable)


@pytest.mark.parametrize("test", EXAMPLES, ids=lambda test: test.name.removeprefix("instrument_classifier."))
def test_docstring_example(test, tmp_path, monkeypatch):
    needs = sorted({m.group() for e in test.examples for m in USER_DATA.finditer(e.source)})
    if needs:
        pytest.skip(f"reads the user's {', '.join(needs)}, which tests never touch")
    monkeypatch.chdir(tmp_path)
    t = np.arange(48_000) / 48_000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
    sf.write("note.wav", np.stack([tone, tone], axis=1), 48_000)
    rng = np.random.default_rng(0)
    for name in ("chromagrams", "train_chromagrams"):
        test.globs.setdefault(name, rng.random((8, 44, 115)).astype(np.float32))
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)

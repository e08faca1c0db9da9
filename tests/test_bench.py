"""The benchmarks still fit the code they measure.

``make bench`` takes an hour and does not run in CI, and the benchmarks
import much of the package inside their functions, where a renamed or
removed name fails only when that benchmark runs.  So: every name a
benchmark imports from the project exists, and every benchmark's ``--help``
runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = sorted((REPO / "bench").glob("bench_*.py"))


def project_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from instrument_classifier... import name`` or ``from bench... import name``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "instrument_classifier", "bench"):
            found += [(node.module, alias.name) for alias in node.names]
    return found


def test_there_are_benchmarks():
    assert len(BENCHMARKS) >= 8


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_every_name_a_benchmark_imports_exists(path):
    imports = project_imports(path)
    assert imports
    missing = [f"{module}.{name}" for module, name in imports
               if not hasattr(importlib.import_module(module), name)
               and importlib.util.find_spec(f"{module}.{name}") is None]
    assert not missing, f"{path.name} imports names the project no longer has: {missing}"


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_every_benchmark_explains_itself(path):
    run = subprocess.run([sys.executable, "-m", f"bench.{path.stem}", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("usage:"), run.stderr[-500:]

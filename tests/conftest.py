"""Shared fixtures: a tiny generated dataset, built once per test session."""

from __future__ import annotations

import pytest

from instrument_classifier.generation import SHARD_SIZE, GenerationSettings, generate_dataset
from instrument_classifier.instruments import load_instruments, select_instruments
from instrument_classifier.soundfonts import resolve_soundfonts
from instrument_classifier.variation import get_recipe

# Enough clips for every default family to appear several times.
TINY_COUNT = 56
TINY_SEED = 7


def make_dataset(path, *, count=TINY_COUNT, seed=TINY_SEED, jobs=1, audio_format="flac", soundfonts=None,
                 families=None, variation="none", vary=None, scheduler=None, shard_size=SHARD_SIZE):
    """Generate a small real dataset (FluidSynth, by default the default SoundFont, clean clips) into ``path``."""
    settings = GenerationSettings(
        count=count, seed=seed, audio_format=audio_format, soundfonts=resolve_soundfonts(soundfonts),
        instruments=select_instruments(load_instruments(), families=families), recipe=get_recipe(variation, vary),
        shard_size=shard_size)
    generate_dataset(settings, path, jobs=jobs, scheduler=scheduler, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A generated dataset folder of 56 clips of the default families (read-only: copy to modify)."""
    return make_dataset(tmp_path_factory.mktemp("tiny") / "dataset")

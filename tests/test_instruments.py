"""The General MIDI instrument table and instrument selection."""

import pytest

from instrument_classifier.cli import UserError
from instrument_classifier.instruments import family_names, load_instruments, select_instruments


def test_table_is_the_gm_patch_map():
    table = load_instruments()
    assert list(table["id"]) == list(range(1, 129))
    assert table["name"].is_unique
    assert table.loc[0, "name"] == "acoustic_grand_piano"
    assert table.loc[40, "name"] == "violin"
    assert table.loc[127, "name"] == "gunshot"
    families = family_names(table)
    assert len(families) == 16
    assert (table.groupby("family_name").size() == 8).all()
    assert table["tonal"].dtype == bool and table["harmonic"].dtype == bool


def test_ranges_are_playable_midi_pitches():
    table = load_instruments()
    assert (table["min_pitch"] >= 21).all() and (table["max_pitch"] <= 108).all()
    assert (table["min_pitch"] < table["max_pitch"]).all()
    violin = table.set_index("name").loc["violin"]
    assert (violin.min_pitch, violin.max_pitch) == (55, 103)  # G3 upwards


def test_default_selection_is_the_seven_harmonic_families():
    selected = select_instruments(load_instruments())
    programs = sorted(selected["midi_program"])
    assert programs == [*range(0, 8), *range(16, 32), *range(40, 48), *range(56, 80)]


def test_select_by_name_id_and_family():
    table = load_instruments()
    assert list(select_instruments(table, instruments=["violin", "1"])["name"]) == ["acoustic_grand_piano", "violin"]
    # As people write them, and as instruments.csv's desc column does: "Violin" was refused.
    assert list(select_instruments(table, instruments=["Violin", "Acoustic Grand Piano", "electric-piano-1"])["name"]) \
        == ["acoustic_grand_piano", "electric_piano_1", "violin"]
    assert set(select_instruments(table, families=["bass"])["family_name"]) == {"bass"}
    # One instrument however often it is named: drawn as often as any other.
    assert list(select_instruments(table, instruments=["violin", "41", "Violin"])["name"]) == ["violin"]


@pytest.mark.parametrize("kwargs, message", [
    ({"families": ["kazoo"]}, "unknown family 'kazoo'"),
    ({"instruments": ["theremin"]}, "unknown instrument 'theremin'"),
    ({"instruments": ["violine"]}, "did you mean violin or viola?"),
    ({"instruments": ["129"]}, "unknown instrument '129'"),
    ({"instruments": ["0"]}, "unknown instrument '0'"),  # ids are 1-128
])
def test_unknown_selection_is_a_clear_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        select_instruments(load_instruments(), **kwargs)

"""FluidSynth rendering, the wrapper script and the chord example, on the real synth."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import fluidsynth_wrapper
import generate_chords
from instrument_classifier.midi_files import midi_file_bytes
from instrument_classifier.synthesis import Renderer, bundled_soundfont, default_soundfont
from instrument_classifier.variation import Variation, note_events


def dominant_frequency(audio, rate):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * rate / len(audio)


@pytest.fixture
def a4_flute_midi(tmp_path):
    path = tmp_path / "a4.mid"
    events = note_events(program=73, pitch=69, velocity=100, variation=Variation(), sample_rate=44100,
                         clip_seconds=2.0)
    path.write_bytes(midi_file_bytes(events, 44100))
    return path


def test_default_soundfont_resolves_to_a_general_midi_font():
    assert default_soundfont().name in {"FluidR3_GM.sf2", "TimGM6mb.sf2"}
    assert bundled_soundfont().is_file()


def test_renderer_plays_the_right_pitch_from_t0():
    with Renderer() as renderer:
        audio = renderer.render_note(program=73, pitch=69, velocity=100, note_seconds=1.0, clip_seconds=2.0)
    assert audio.dtype == np.float32 and audio.shape == (88200,)
    assert np.abs(audio[: 44100 // 20]).max() > 1e-3  # sounding within the first 50 ms
    assert abs(dominant_frequency(audio[4410:44100], 44100) - 440.0) < 3.0  # A4


def test_a_note_renders_the_same_after_any_other_notes_as_on_a_fresh_synth():
    """No state of one render reaches the next: a string note released at the clip's end (whose release
    FluidSynth's reset lets ring on), notes panned and layered otherwise, then the note again."""
    note = dict(program=0, pitch=60, velocity=90, note_seconds=1.0, clip_seconds=2.0)
    with Renderer() as fresh:
        alone = fresh.render_note(**note)
    with Renderer() as renderer:
        renderer.render_note(program=48, pitch=71, velocity=120, note_seconds=1.95, clip_seconds=2.0)
        assert np.abs(renderer.render_events([], 44100)).max() == 0.0  # nothing rings on into a render
        for program, pitch in [(48, 71), (40, 84), (56, 48), (0, 60), (73, 100)]:
            renderer.render_note(program=program, pitch=pitch, velocity=127, note_seconds=1.9, clip_seconds=2.0)
            assert np.array_equal(renderer.render_note(**note), alone)


@pytest.mark.parametrize("suffix, rate", [(".wav", 44100), (".flac", 44100), (".wav", 22050)])
def test_wrapper_converts_midi_to_audio(tmp_path, a4_flute_midi, suffix, rate, capsys):
    output = tmp_path / f"out{suffix}"
    assert fluidsynth_wrapper.main([str(a4_flute_midi), str(output), "-r", str(rate)]) == 0
    audio, file_rate = sf.read(output)
    assert file_rate == rate
    assert audio.ndim == 1 and len(audio) == 2 * rate  # 1 s note + 1 s release tail
    assert np.abs(audio).max() > 0.01
    assert abs(dominant_frequency(audio[: rate], rate) - 440.0) < 3.0


def test_wrapper_uses_the_given_soundfont(tmp_path, a4_flute_midi):
    default = tmp_path / "default.wav"
    other = tmp_path / "other.wav"
    assert fluidsynth_wrapper.main([str(a4_flute_midi), str(default)]) == 0
    assert fluidsynth_wrapper.main(["-s", str(bundled_soundfont()), str(a4_flute_midi), str(other)]) == 0
    assert not np.array_equal(sf.read(default)[0], sf.read(other)[0])


def test_set_default_soundfont(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fluidsynth_wrapper.main(["--set-default", str(bundled_soundfont())]) == 0
    stored = Path((tmp_path / ".fluidsynth" / "default_sound_font").read_text().strip())
    assert stored.resolve() == bundled_soundfont().resolve()  # the same file, whatever links lead to it
    assert fluidsynth_wrapper.main(["--show-default"]) == 0
    assert capsys.readouterr().out.strip().endswith("TimGM6mb.sf2")
    assert fluidsynth_wrapper.main(["--set-default", "FluidR3_GM"]) == 0  # a catalogue name, as -s takes
    assert (tmp_path / ".fluidsynth" / "default_sound_font").read_text().strip().endswith("FluidR3_GM.sf2")
    # A stored default that went away: the error says where it was stored, or every tool just said "not found".
    (tmp_path / ".fluidsynth" / "default_sound_font").write_text(str(tmp_path / "gone.sf2"))
    capsys.readouterr()
    assert fluidsynth_wrapper.main(["--show-default"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gone.sf2" in err and "default_sound_font" in err and "--set-default" in err
    # An empty file said ". is a folder"; a folder in its place was passed over, or a bare "Is a directory".
    stored = tmp_path / ".fluidsynth" / "default_sound_font"
    stored.write_text("")
    assert fluidsynth_wrapper.main(["--show-default"]) == 2
    assert f"{stored}, which stores the default SoundFont, is empty" in capsys.readouterr().err
    stored.unlink()
    stored.mkdir()
    for argv in (["--show-default"], ["--set-default", "FluidR3_GM"]):
        assert fluidsynth_wrapper.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{stored} is a folder: it should be the file that stores" in err, err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make_args, message", [
    (lambda d, m: [str(d / "missing.mid"), str(d / "o.wav")], "MIDI file not found"),
    (lambda d, m: [str(d / "junk.mid"), str(d / "o.wav")], "cannot read MIDI file"),
    (lambda d, m: ["-s", str(d / "missing.sf2"), str(m), str(d / "o.wav")], "SoundFont not found"),
    (lambda d, m: ["-s", str(m), str(m), str(d / "o.wav")], "not a SoundFont"),
    # A header and no samples: FluidSynth printed four lines of its own before the error.
    (lambda d, m: ["-s", str(_write(d / "empty.sf2", b"RIFF\x10\0\0\0sfbkLIST\x04\0\0\0INFO")), str(m),
                   str(d / "o.wav")], "not a complete SoundFont"),
    (lambda d, m: [str(m), str(d / "o.mp4")], "unknown output format"),
    (lambda d, m: [str(m), str(d / "no" / "such" / "dir" / "o.wav")], None),
    (lambda d, m: ["--set-default", str(d / "missing.sf2")], "SoundFont not found"),
    (lambda d, m: ["--set-default", str(_write(d / "empty.sf2", b"RIFF\x10\0\0\0sfbkLIST\x04\0\0\0INFO"))],
     "not a complete SoundFont"),
    (lambda d, m: [], "give a MIDI file"),
    (lambda d, m: [str(d), str(d / "o.wav")], "is not a file"),
    (lambda d, m: [str(m), str(d / "o.wav"), "--set-default", "FluidR3_GM"], "each work alone"),  # converted nothing
    (lambda d, m: ["--set-default", "additive"], "our own synthesiser, not a SoundFont file"),
    (lambda d, m: ["--set-default", "all"], "--set-default stores one SoundFont"),
    (lambda d, m: ["-s", "nope", str(m), str(d / "o.wav")], "give a path or a name from soundfonts.csv"),
    (lambda d, m: [str(m), str(d / "o.wav"), "-r", "0"], "sample rate must be within 8000..192000 Hz, got 0"),
    (lambda d, m: [str(m), str(d / "o.wav"), "-r", "100"], "sample rate must be within"),  # not a 100 Hz file
    (lambda d, m: ["-s", "additive", str(m)], "renders to a file only"),  # played: ours has no player
])
def test_wrapper_bad_input_is_one_line(tmp_path, a4_flute_midi, capsys, monkeypatch, make_args, message):
    monkeypatch.setenv("HOME", str(tmp_path))  # where --set-default would store a font, were a check to fail
    (tmp_path / "junk.mid").write_text("not midi")
    status = fluidsynth_wrapper.main(make_args(tmp_path, a4_flute_midi))
    err = capsys.readouterr().err
    if message is None:  # a missing output folder is created, not an error
        assert status == 0
        return
    assert status == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / ".fluidsynth").exists()


def test_playing_without_an_audio_device_is_a_clear_error(a4_flute_midi, capsys, monkeypatch):
    from instrument_classifier import synthesis

    if synthesis.has_audio_device():
        pytest.skip("this machine has an audio device")
    assert fluidsynth_wrapper.main([str(a4_flute_midi)]) == 2
    assert "no audio device" in capsys.readouterr().err


def test_chord_example_whose_audio_cannot_be_written_leaves_no_midi(tmp_path, capsys, monkeypatch):
    """The MIDI file appears only with its audio: a failed write leaves neither (README, *Reliability*)."""
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(generate_chords, "write_audio", disk_full)
    status = generate_chords.main(["-o", str(tmp_path / "chords.mid"), "--audio", str(tmp_path / "chords.flac")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_chord_example_writes_midi_and_audio(tmp_path):
    import mido

    midi_path, audio_path = tmp_path / "chords.mid", tmp_path / "chords.flac"
    assert generate_chords.main(["-o", str(midi_path), "--progression", "I", "IV", "V", "I", "--instrument", "violin",
                                 "--audio", str(audio_path)]) == 0
    programs = {m.program for m in mido.MidiFile(midi_path) if m.type == "program_change"}
    assert programs == {40}  # violin: id 41 of instruments.csv, as every script names it; GM program 40
    notes_on = [m for m in mido.MidiFile(midi_path) if m.type == "note_on" and m.velocity > 0]
    assert len(notes_on) == 12  # four triads
    first_chord = sorted(m.note % 12 for m in notes_on[:3])
    assert first_chord == [0, 4, 7]  # C major
    audio, rate = sf.read(audio_path)
    assert rate == 44100 and np.abs(audio).max() > 0.01
    # --progression given twice: the second follows the first (the last alone was played).
    assert generate_chords.main(["-o", str(midi_path), "--progression", "I", "--progression", "V"]) == 0
    notes_on = [m.note % 12 for m in mido.MidiFile(midi_path) if m.type == "note_on" and m.velocity > 0]
    assert sorted(notes_on[:3]) == [0, 4, 7] and sorted(notes_on[3:]) == [2, 7, 11]  # C major, then G major


@pytest.mark.parametrize("args, message", [
    (["--progression", "XQ"], "unknown chord"),
    (["--instrument", "300"], "unknown instrument '300'"),
    (["--key", "H#"], "unknown key"),
])
def test_chord_example_bad_input(tmp_path, capsys, args, message):
    assert generate_chords.main(["-o", str(tmp_path / "c.mid"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c.mid").exists()


def test_a_clean_note_is_the_seeds_midi_file_byte_for_byte(a4_flute_midi):
    # Format 0, 480 ticks per beat, tempo 120 bpm; program 73, A4 velocity 100 at t = 0, off at tick 960.
    expected = ("4d546864000000060000000101e04d54726b0000001700ff510307a12000c04900904564874080450000ff2f00")
    assert a4_flute_midi.read_bytes().hex() == expected


def test_a_midi_file_of_another_program_reads_as_general_midi_means_it(tmp_path):
    """Most sequencers end a note with a note-on of velocity 0, and channel 10 is the drum kit (bank 128)."""
    import mido

    from instrument_classifier.midi_files import NoteEvent, read_midi_events

    track = mido.MidiTrack([mido.Message("program_change", channel=9, program=0, time=0),
                            mido.Message("note_on", channel=0, note=60, velocity=90, time=0),
                            mido.Message("note_on", channel=0, note=60, velocity=0, time=480)])
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(tmp_path / "song.mid")
    events, length = read_midi_events(tmp_path / "song.mid", 44_100)
    assert events == [NoteEvent(0, "program", 9, 0, 128), NoteEvent(0, "note_on", 0, 60, 90),
                      NoteEvent(22_050, "note_off", 0, 60)]  # 480 ticks at 120 bpm: 0.5 s
    assert length == 22_050


def test_a_bank_above_127_survives_the_midi_file(tmp_path):
    """Our synthesiser's instruments are banks up to 16383 (MSB and LSB): a clip's .mid renders the same one."""
    from instrument_classifier.midi_files import NoteEvent, read_midi_events

    events = [NoteEvent(0, "program", 0, 40, 300), NoteEvent(0, "note_on", 0, 69, 100),
              NoteEvent(44_100, "note_off", 0, 69)]
    path = tmp_path / "note.mid"
    path.write_bytes(midi_file_bytes(events, 44_100))
    read, _ = read_midi_events(path, 44_100)
    program = [event for event in read if event.kind == "program"][0]
    assert (program.data1, program.data2) == (40, 300)

"""Render MIDI notes to audio in-process with FluidSynth and a SoundFont.

One :class:`Renderer` holds one FluidSynth synth with one SoundFont loaded;
it renders note events (or a whole MIDI file) straight into a numpy array, so
no subprocess runs per file.

Determinism.  A synth carries state from one render to the next, and
``fluid_synth_system_reset`` clears little of it (FluidSynth 2.3): it lets
the sounding voices ring on in their release rather than stopping them (a
string note's release reached into the next clip; README, *Stage 1*), each
voice slot keeps the output gain of the note that last used it, which a new
note ramps from over its first block, the reverb keeps its tail and the
chorus its LFO phase.  So every render first brings the synth to one state,
whatever it rendered before (:meth:`Renderer._settle`):

1. the voices are stopped (all sounds off, which takes effect in the next
   block, rendered and thrown away) before the reset;
2. a fixed chord (keys of the font's first preset, until
   :data:`PRIMED_VOICES` voices sound) is struck for one block and stopped,
   so that the voice slots a note takes (the first free ones) hold the same
   gains after every history, a fresh synth's included;
3. it renders a whole number of 64-sample blocks, so events always fall on
   the same block offsets;
4. the reverb and chorus are off by default: the notes are dry.

So a note renders the same on a fresh synth and after any other notes
(tested): a dataset's clip renders again from its row alone, and its MIDI
file gives its audio.  (What sounds more voices at once than the chord
filled, a big chord, may still differ in its first block, by ~1e-4; with
``reverb=True`` the reverb's tail still carries over.)

Making a second synth for a SoundFont that a live synth in the process has
already loaded is cheap (~40 ms for FluidR3_GM): FluidSynth shares the sample
data through its sample cache.

Audio is read with ``fluid_synth_write_float`` (the 16-bit path dithers with a
state that also carries over between calls) and downmixed to mono as (L+R)/2.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from .cli import UserError, printable
from .defaults import DEFAULT_SOUNDFONT_FILE, SAMPLE_RATE, SOUNDFONT_CACHE_DIR, SYSTEM_SOUNDFONTS
from .midi_files import NoteEvent, read_midi_events
from .sf3 import check_lists, uncompressed

# FluidSynth renders in blocks of this many samples (FLUID_BUFSIZE).
BLOCK = 64
# The synth's output gain: loud enough for 16-bit files, no clipping on one note.
GAIN = 0.5
# The voice slots that the chord struck before every render fills (Renderer._settle; a new note takes the first
# free slots): one note of the catalogue's fonts takes at most 6 (measured over every program, pitch and font).
# The chord costs ~0.4 ms a render, of ~2 ms for a 2 s note.
PRIMED_VOICES = 16
PRIMER_VELOCITY = 100
# Each font's chord, (bank, program, keys) or None, found once per process (Renderer._find_primer).
_primers: dict[str, tuple[int, int, tuple[int, ...]] | None] = {}


def bundled_soundfont() -> Path:
    """The TimGM6mb SoundFont shipped inside the pretty_midi package."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def default_soundfont() -> Path:
    """Resolve the default SoundFont.

    Order: the path stored in ``~/.fluidsynth/default_sound_font``, Debian's
    ``FluidR3_GM.sf2``, pretty_midi's ``TimGM6mb.sf2``.
    """
    stored = _stored_default_file()
    if stored.is_file():
        try:
            text = stored.read_text().strip()
            if not text:
                raise UserError(f"{stored}, which stores the default SoundFont, is empty")
            return check_soundfont(Path(text).expanduser())
        except (UserError, OSError, UnicodeDecodeError) as error:
            reason = error if isinstance(error, UserError) else f"cannot read {stored} ({error})"
            raise UserError(f"{reason} (the default stored in {stored}: store another with "
                            f"fluidsynth_wrapper.py --set-default FONT, or remove that file)") from None
    for candidate in (*SYSTEM_SOUNDFONTS, bundled_soundfont()):
        if candidate.is_file():
            return candidate
    raise UserError("no SoundFont found: install fluid-soundfont-gm (make setup) or pass --soundfont")


def set_default_soundfont(path: str | os.PathLike) -> Path:
    """Store ``path`` as the default SoundFont in ``~/.fluidsynth/default_sound_font``."""
    path = check_soundfont(Path(path).expanduser().resolve())
    stored = _stored_default_file()
    try:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(f"{path}\n")
    except OSError as error:
        raise UserError(f"cannot store the default SoundFont in {stored}: {error.strerror or error}") from None
    return path


def _stored_default_file() -> Path:
    """``~/.fluidsynth/default_sound_font``; UserError if a folder is there (it was passed over in silence)."""
    stored = DEFAULT_SOUNDFONT_FILE.expanduser()
    if stored.is_dir():
        raise UserError(f"{stored} is a folder: it should be the file that stores the default SoundFont's path")
    return stored


def check_soundfont(path: str | os.PathLike) -> Path:
    """Return ``path`` if it is a readable SoundFont 2 file (RIFF ``sfbk``), else raise UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is a folder, not a SoundFont file" if path.is_dir()
                        else f"SoundFont not found: {path}")
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except OSError as error:
        raise UserError(f"cannot read SoundFont {path}: {error}") from None
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise UserError(f"not a SoundFont (.sf2) file: {path}")
    declared, size = int.from_bytes(header[4:8], "little") + 8, path.stat().st_size
    if declared > size:  # FluidSynth would print several lines of its own about it
        raise UserError(f"SoundFont {path} is truncated: its header says {declared} bytes, the file has {size}")
    try:  # else FluidSynth loads what it can and prints lines of its own before failing
        check_lists(path)
    except (OSError, ValueError) as error:
        raise UserError(f"not a complete SoundFont: {path} ({error})") from None
    if printable(str(path)) != str(path):  # pyfluidsynth encodes a path as strict UTF-8, and takes no bytes
        raise UserError(f"SoundFont {printable(str(path))}: FluidSynth takes only UTF-8 file names; rename it")
    return path


def _fluidsynth():
    """Import pyfluidsynth, turning a missing libfluidsynth into a UserError."""
    try:
        import fluidsynth
    except (ImportError, OSError) as error:
        raise UserError(f"FluidSynth is not available ({error}): run `make setup`") from None
    write_float = fluidsynth._fl.fluid_synth_write_float
    write_float.restype = ctypes.c_int
    write_float.argtypes = [ctypes.c_void_p, ctypes.c_int,
                            ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                            ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    fluidsynth._fl.fluid_synth_get_active_voice_count.restype = ctypes.c_int
    fluidsynth._fl.fluid_synth_get_active_voice_count.argtypes = [ctypes.c_void_p]
    return fluidsynth, write_float


def fluidsynth_version() -> str:
    """The version of the libfluidsynth this process renders with (``"2.3.1"``), or ``"missing"``."""
    try:
        fluidsynth, _ = _fluidsynth()
    except UserError:
        return "missing"
    version = fluidsynth._fl.fluid_version_str
    version.restype = ctypes.c_char_p
    return version().decode()


class Renderer:
    """A FluidSynth synth with one SoundFont, rendering to float32 mono arrays.

    Parameters
    ----------
    soundfont : path of an .sf2 file (``None``: :func:`default_soundfont`).
    sample_rate : output rate in Hz.
    reverb : switch FluidSynth's reverb on (its tail then carries into the next render).
    decoded_copies : where an .sf3 font's decoded copy is kept (:func:`sf3.uncompressed`;
        the same audio, loaded ~10x faster); ``None`` loads the .sf3 itself.
    """

    def __init__(self, soundfont: str | os.PathLike | None = None, *, sample_rate: int = SAMPLE_RATE,
                 reverb: bool = False, decoded_copies: str | os.PathLike | None = SOUNDFONT_CACHE_DIR):
        self.soundfont = check_soundfont(soundfont) if soundfont is not None else default_soundfont()
        self.sample_rate = int(sample_rate)
        fluidsynth, self._write_float = _fluidsynth()
        self._count_voices = fluidsynth._fl.fluid_synth_get_active_voice_count
        self._synth = fluidsynth.Synth(
            gain=GAIN, samplerate=float(self.sample_rate), channels=16,
            **{"synth.chorus.active": 0, "synth.reverb.active": int(reverb),
               "synth.cpu-cores": 1, "synth.verbose": 0})
        try:
            self._sfid = self._synth.sfload(str(uncompressed(self.soundfont, decoded_copies)))
        except BaseException:  # a font that will not decode, Ctrl-C: the synth goes with it
            self.close()
            raise
        if self._sfid < 0:
            self.close()
            raise UserError(f"FluidSynth could not load SoundFont {self.soundfont}")
        self._left = np.zeros(BLOCK, dtype=np.float32)
        self._right = np.zeros(BLOCK, dtype=np.float32)
        self._primer = self._find_primer()

    def close(self) -> None:
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def has_preset(self, program: int, bank: int = 0) -> bool:
        """Whether the SoundFont defines ``program`` in ``bank``."""
        return self._synth.sfpreset_name(self._sfid, bank, program) is not None

    def _find_primer(self) -> tuple[int, int, tuple[int, ...]] | None:
        """The chord struck before every render: (bank, program, keys) of the font's first preset (the GM piano),
        keys from middle C outwards until :data:`PRIMED_VOICES` voices sound; ``None`` for a font of no presets.
        Once per font and process (the search takes ~50 ms where bank 0 is empty)."""
        key = str(self.soundfont)
        if key not in _primers:
            preset = next(((bank, program) for bank in range(129) for program in range(128)
                           if self.has_preset(program, bank)), None)
            _primers[key] = None if preset is None else (*preset, self._strike(*preset))
            self._silence()
        return _primers[key]

    def _strike(self, bank: int, program: int, keys=None) -> tuple[int, ...]:
        """Strike ``keys`` of a preset on channel 0 (``None``: from middle C outwards until
        :data:`PRIMED_VOICES` voices sound); the keys struck."""
        synth = self._synth
        synth.system_reset()
        synth.program_select(0, self._sfid, bank, program)
        struck = []
        for pitch in keys if keys is not None else sorted(range(128), key=lambda k: (abs(k - 60), k)):
            synth.noteon(0, pitch, PRIMER_VELOCITY)
            struck.append(pitch)
            if keys is None and self._count_voices(synth.synth) >= PRIMED_VOICES:
                break
        return tuple(struck)

    def _silence(self) -> None:
        """Stop every voice at once (all sounds off takes effect at the next block: one is rendered and dropped)."""
        for channel in range(16):
            self._synth.all_sounds_off(channel)
        self._write(0, BLOCK)

    def _settle(self) -> None:
        """Bring the synth to one state whatever it rendered before (module docstring, *Determinism*)."""
        self._silence()
        if self._primer is not None:
            self._strike(*self._primer)  # from a reset synth
            self._write(0, BLOCK)
            self._silence()
        self._synth.system_reset()

    def _apply(self, event: NoteEvent) -> None:
        synth = self._synth
        if event.kind == "note_on":
            synth.noteon(event.channel, event.data1, event.data2)
        elif event.kind == "note_off":
            synth.noteoff(event.channel, event.data1)
        elif event.kind == "program":
            synth.program_select(event.channel, self._sfid, event.data2, event.data1)
        elif event.kind == "control":
            synth.cc(event.channel, event.data1, event.data2)
        elif event.kind == "pitchwheel":
            synth.pitch_bend(event.channel, event.data1 - 8192)

    def render_events(self, events: list[NoteEvent], n_samples: int) -> np.ndarray:
        """Render ``events`` (sorted by sample) from a settled synth; float32 [shape=(n_samples,)].

        Channel 9 plays bank 128 (GM percussion) unless a program event says otherwise.
        """
        total = -(-n_samples // BLOCK) * BLOCK  # a whole number of blocks
        if len(self._left) < total:
            self._left = np.zeros(total, dtype=np.float32)
            self._right = np.zeros(total, dtype=np.float32)
        left, right = self._left, self._right
        self._settle()
        for channel in range(16):
            self._synth.program_select(channel, self._sfid, 128 if channel == 9 else 0, 0)
        position = 0
        for event in sorted(events, key=lambda e: e.sample):
            at = min(max(event.sample, position), total)
            if at > position:
                self._write(position, at)
                position = at
            self._apply(event)
        if position < total:
            self._write(position, total)
        mono = (left[:n_samples] + right[:n_samples]) * np.float32(0.5)
        return mono

    def _write(self, start: int, stop: int) -> None:
        left = self._left[start:].ctypes.data
        right = self._right[start:].ctypes.data
        status = self._write_float(self._synth.synth, stop - start, left, 0, 1, right, 0, 1)
        if status != 0:
            raise RuntimeError("fluid_synth_write_float failed")

    def render_note(self, *, program: int, pitch: int, velocity: int, note_seconds: float,
                    clip_seconds: float, bank: int = 0, channel: int = 0) -> np.ndarray:
        """One note from t = 0, released after ``note_seconds``; float32 [shape=(clip samples,)]."""
        rate = self.sample_rate
        events = [
            NoteEvent(0, "program", channel, program, bank),
            NoteEvent(0, "note_on", channel, pitch, velocity),
            NoteEvent(round(note_seconds * rate), "note_off", channel, pitch),
        ]
        return self.render_events(events, round(clip_seconds * rate))

    def render_midi(self, path: str | os.PathLike, *, tail_seconds: float = 1.0) -> np.ndarray:
        """Render a whole MIDI file, plus ``tail_seconds`` for the release; float32 mono."""
        events, end = read_midi_events(path, self.sample_rate)
        return self.render_events(events, end + round(tail_seconds * self.sample_rate))


# Output formats by file extension (what soundfile writes).
AUDIO_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


def check_audio_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path; UserError unless its extension names a format :func:`write_audio` writes."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_FORMATS:
        raise UserError(f"unknown output format {path.suffix or '(none)'!r} for {path} "
                        f"(use {', '.join(AUDIO_FORMATS)})")
    return path


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono float audio atomically; the format follows the extension."""
    import soundfile as sf

    from .cli import atomic_path
    from .dataset import soundfile_path

    path = check_audio_path(path)
    audio_format, subtype = AUDIO_FORMATS[path.suffix.lower()]
    try:
        with atomic_path(path) as tmp:
            sf.write(soundfile_path(tmp), np.clip(audio, -1.0, 1.0), sample_rate, format=audio_format, subtype=subtype)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def has_audio_device() -> bool:
    """Whether this machine has a sound card or a PulseAudio/PipeWire server to play to."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return (any(Path("/dev/snd").glob("pcmC*p")) or bool(os.environ.get("PULSE_SERVER"))
            or (bool(runtime) and (Path(runtime) / "pulse" / "native").exists()))


def play_midi(path: str | os.PathLike, soundfont: str | os.PathLike | None = None) -> None:
    """Play a MIDI file on the machine's audio device through FluidSynth's audio driver."""
    import time

    events, length = read_midi_events(path, SAMPLE_RATE)  # validates the file first
    if not has_audio_device():
        raise UserError("no audio device found to play on: give an output file to convert instead")
    soundfont = check_soundfont(soundfont) if soundfont is not None else default_soundfont()
    fluidsynth, _ = _fluidsynth()
    synth = fluidsynth.Synth(gain=GAIN)
    try:
        if synth.start() != 0 or synth.audio_driver is None:
            raise UserError("FluidSynth could not open the audio device")
        synth.sfload(str(soundfont), 1)
        synth.play_midi_file(str(path))
        time.sleep(length / SAMPLE_RATE + 1.0)
    finally:
        synth.delete()

"""MIDI notes as events at sample positions, and Standard MIDI Files to and from them.

:class:`NoteEvent` is what the renderers play (:mod:`synthesis`, :mod:`additive`)
and what :mod:`variation` writes a note's expression as; :func:`midi_file_bytes`
writes a clip's MIDI file and :func:`read_midi_events` reads one back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .cli import UserError

# The longest MIDI file rendered or played: it is rendered in memory (~0.5 MB a second).
MAX_MIDI_SECONDS = 3600


@dataclass(frozen=True)
class NoteEvent:
    """A MIDI channel event at a sample position.

    ``kind`` is one of ``note_on``, ``note_off``, ``program`` (data1 = program,
    data2 = bank), ``control`` (data1 = controller, data2 = value) and
    ``pitchwheel`` (data1 = value, 0..16383).
    """

    sample: int
    kind: str
    channel: int
    data1: int = 0
    data2: int = 0


def read_midi_events(path: str | os.PathLike, sample_rate: int) -> tuple[list[NoteEvent], int]:
    """Parse a Standard MIDI File into :class:`NoteEvent` objects and its length in samples.

    A file longer than :data:`MAX_MIDI_SECONDS` is a UserError (it would be rendered in memory).
    """
    import mido

    path = Path(path)
    try:
        midi = mido.MidiFile(path)
        messages = list(midi)  # merged tracks, times in seconds (tempo applied)
    except FileNotFoundError:
        raise UserError(f"MIDI file not found: {path}") from None
    except (OSError, ValueError, EOFError, KeyError, IndexError) as error:
        reason = str(error) or ("the file ends early (truncated?)" if isinstance(error, EOFError)
                                else type(error).__name__)
        raise UserError(f"cannot read MIDI file {path}: {reason}") from None
    length_seconds = sum(message.time for message in messages)
    if length_seconds > MAX_MIDI_SECONDS:
        raise UserError(f"MIDI file {path} lasts {length_seconds:,.0f} s; at most {MAX_MIDI_SECONDS} s are rendered")
    events: list[NoteEvent] = []
    seconds = 0.0
    banks = [0] * 16
    msbs = [0] * 16
    for message in messages:
        seconds += message.time
        sample = round(seconds * sample_rate)
        kind = message.type
        if kind == "note_on" and message.velocity > 0:
            events.append(NoteEvent(sample, "note_on", message.channel, message.note, message.velocity))
        elif kind == "note_off" or (kind == "note_on" and message.velocity == 0):
            events.append(NoteEvent(sample, "note_off", message.channel, message.note))
        elif kind == "program_change":
            bank = 128 if message.channel == 9 else banks[message.channel]
            events.append(NoteEvent(sample, "program", message.channel, message.program, bank))
        elif kind == "control_change":
            # Bank select: the MSB alone is the bank (GS, as FluidSynth reads it); with an LSB, MSB * 128 + LSB.
            if message.control == 0:
                msbs[message.channel] = banks[message.channel] = message.value
            elif message.control == 32:
                banks[message.channel] = msbs[message.channel] * 128 + message.value
            events.append(NoteEvent(sample, "control", message.channel, message.control, message.value))
        elif kind == "pitchwheel":
            events.append(NoteEvent(sample, "pitchwheel", message.channel, message.pitch + 8192))
    return events, round(seconds * sample_rate)


def _variable_length(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append((value & 0x7F) | 0x80)
    return bytes(reversed(out))


def midi_file_bytes(events: list[NoteEvent], sample_rate: int, *, ticks_per_beat: int = 480,
                    tempo_us: int = 500_000) -> bytes:
    """A Standard MIDI File (format 0) of ``events`` (sorted by sample): the inverse of :func:`read_midi_events`.

    Written directly (a one-note file is about 40 bytes; pretty_midi spent
    ~0.7 ms a file, 10 % of a clip's cost).  Events at sample positions that
    lie on the tick grid (:data:`variation.TICKS_PER_SECOND` at the defaults)
    read back at exactly those positions.
    """
    ticks_per_second = ticks_per_beat * 1e6 / tempo_us
    body = [b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big")]  # set tempo
    last = 0
    for event in events:
        tick = round(event.sample * ticks_per_second / sample_rate)
        channel = event.channel & 0x0F
        if event.kind == "note_on":
            message = bytes([0x90 | channel, event.data1, event.data2])
        elif event.kind == "note_off":
            message = bytes([0x80 | channel, event.data1, 0])
        elif event.kind == "program":
            message = bytes([0xC0 | channel, event.data1])
            if event.data2 and channel != 9:  # bank select, MSB and LSB (channel 10 is the percussion bank)
                body.append(_variable_length(tick - last) + bytes([0xB0 | channel, 0, event.data2 >> 7 & 0x7F]))
                body.append(b"\x00" + bytes([0xB0 | channel, 32, event.data2 & 0x7F]))
                last = tick
        elif event.kind == "control":
            message = bytes([0xB0 | channel, event.data1, event.data2])
        elif event.kind == "pitchwheel":
            message = bytes([0xE0 | channel, event.data1 & 0x7F, event.data1 >> 7])
        else:
            raise ValueError(f"unknown event kind {event.kind!r}")
        body.append(_variable_length(tick - last) + message)
        last = tick
    body.append(b"\x00\xff\x2f\x00")  # end of track
    track = b"".join(body)
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") \
        + ticks_per_beat.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + track

#!/usr/bin/env python3
"""Which SoundFonts share recordings: the evidence behind the lineages of data/soundfonts.csv.

Two checks for every pair of catalogue fonts, over the GM programs of the
default families:

1. **Sample names.**  Each preset's samples (preset -> instrument zones ->
   sample headers, read from the font's RIFF structure); per program, the
   share of one font's sample names that the other font's preset uses too,
   averaged over the programs.  A renamed copy would escape this check, so:
2. **Audio.**  Every program plays the same notes (C3, C4, C5, velocity 100,
   dry) in both fonts; the correlation of their log-magnitude spectra (the
   long-term spectrum, 50 Hz - 16 kHz) averaged over the programs.  Renders
   of one recording correlate near 1, unlike instruments far lower.

And what each font's samples are (sample headers): their length, the
attack before the loop, the loop's length.  The small gs banks store most
notes as ~40 ms of attack and a loop of a few waveform cycles, so past
their first frame their spectrum never changes; the fluid banks loop after
~0.9 s of recording (docs/generalisation.md, *What the small banks are made of*).

    python -m bench.bench_soundfonts
"""

from __future__ import annotations

import argparse
import itertools
import struct
from pathlib import Path

import numpy as np

from bench.common import write_results
from instrument_classifier.instruments import load_instruments, select_instruments
from instrument_classifier.sf3 import uncompressed
from instrument_classifier.soundfonts import installed, load_catalogue
from instrument_classifier.synthesis import Renderer

PITCHES = (48, 60, 72)
SECONDS = 1.0
SAMPLE_RATE = 44_100


# The chunk ids of a SoundFont's RIFF structure.
CHUNK_IDS = {b"LIST", b"phdr", b"pbag", b"pmod", b"pgen", b"inst", b"ibag", b"imod", b"igen", b"shdr"}


def _chunks(data: bytes, start: int, end: int):
    """(id, offset, size) of the RIFF chunks in data[start:end]."""
    position = start
    while position + 8 <= end:
        name, size = data[position:position + 4], struct.unpack("<I", data[position + 4:position + 8])[0]
        yield name, position + 8, size
        position += 8 + size
        if size & 1 and data[position + 1:position + 5] in CHUNK_IDS:  # the pad byte (some .sf3 writers omit it)
            position += 1


def preset_samples(path: Path) -> dict[int, set[str]]:
    """Bank-0 program -> the names of every sample its preset plays (SF2 ``pdta`` chunks)."""
    ids, headers = preset_sample_headers(path)
    return {program: {_sample_name(headers[i]) for i in found} for program, found in ids.items()}


def _sample_name(header: bytes) -> str:
    return header[:20].split(b"\0")[0].decode("latin-1").strip()


def sample_loops(path: Path, programs) -> dict[str, float]:
    """Medians over the samples the ``programs`` play: length, attack before the loop (s), short loops' share.

    ``path`` must hold PCM samples (an .sf2; an .sf3's decoded copy), whose
    header offsets count sample frames.
    """
    ids, headers = preset_sample_headers(path)
    used = sorted(set().union(*(ids.get(p, set()) for p in programs)))
    start, end, loop_start, loop_end, rate = np.array([struct.unpack("<5I", headers[i][20:40]) for i in used],
                                                      dtype=float).T
    return {"samples": len(used), "median_length_s": round(float(np.median((end - start) / rate)), 3),
            "median_attack_before_loop_s": round(float(np.median((loop_start - start) / rate)), 3),
            "loops_under_20ms": round(float(np.mean((loop_end - loop_start) / rate < 0.020)), 3)}


def preset_sample_headers(path: Path) -> tuple[dict[int, set[int]], list[bytes]]:
    """Bank-0 program -> the indices of every sample its preset plays, and the sample headers (``shdr``)."""
    data = path.read_bytes()
    tables: dict[bytes, bytes] = {}
    for name, offset, size in _chunks(data, 12, len(data)):
        if name == b"LIST" and data[offset:offset + 4] == b"pdta":
            for sub, sub_offset, sub_size in _chunks(data, offset + 4, offset + size):
                tables[sub] = data[sub_offset:sub_offset + sub_size]

    def records(key: bytes, width: int) -> list[bytes]:
        table = tables[key]
        return [table[i:i + width] for i in range(0, len(table), width)]

    presets, pbags, pgens = records(b"phdr", 38), records(b"pbag", 4), records(b"pgen", 4)
    insts, ibags, igens = records(b"inst", 22), records(b"ibag", 4), records(b"igen", 4)
    headers = records(b"shdr", 46)

    def generators(bags: list[bytes], gens: list[bytes], first_bag: int, last_bag: int, operator: int) -> set[int]:
        found = set()
        for bag in range(first_bag, last_bag):
            first_gen = struct.unpack("<H", bags[bag][:2])[0]
            last_gen = struct.unpack("<H", bags[bag + 1][:2])[0]
            for gen in gens[first_gen:last_gen]:
                op, amount = struct.unpack("<HH", gen)
                if op == operator:
                    found.add(amount)
        return found

    out: dict[int, set[int]] = {}
    for i, record in enumerate(presets[:-1]):
        program, bank, bag = struct.unpack("<HHH", record[20:26])
        if bank != 0:
            continue
        next_bag = struct.unpack("<H", presets[i + 1][24:26])[0]
        names = set()
        for instrument in generators(pbags, pgens, bag, next_bag, 41):  # 41: instrument
            first = struct.unpack("<H", insts[instrument][20:22])[0]
            last = struct.unpack("<H", insts[instrument + 1][20:22])[0]
            names |= generators(ibags, igens, first, last, 53)  # 53: sampleID
        out[program] = names
    return out, headers


def log_spectrum(renderer: Renderer, program: int) -> np.ndarray:
    """Mean log-magnitude spectrum of the program's notes at PITCHES (50 Hz - 16 kHz), standardised."""
    spectra = []
    for pitch in PITCHES:
        audio = renderer.render_note(program=program, pitch=pitch, velocity=100, note_seconds=SECONDS,
                                     clip_seconds=SECONDS)
        magnitude = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        frequency = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
        spectra.append(np.log(magnitude[(frequency >= 50) & (frequency <= 16000)] + 1e-9))
    spectrum = np.concatenate(spectra)
    return (spectrum - spectrum.mean()) / (spectrum.std() or 1.0)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # no options: --help
    fonts = [installed(font) for font in load_catalogue() if not font.builtin]  # our synthesiser has no samples
    programs = select_instruments(load_instruments())["midi_program"].tolist()
    names, spectra = {}, {}
    for font in fonts:
        names[font.name] = preset_samples(font.path)
        with Renderer(font.path, sample_rate=SAMPLE_RATE) as renderer:
            spectra[font.name] = {p: log_spectrum(renderer, p) for p in programs}
    # The baseline for "unlike": different programs of one family in one font.
    rows = []
    for a, b in itertools.combinations([font.name for font in fonts], 2):
        shared = [len(names[a].get(p, set()) & names[b].get(p, set())) / max(1, min(len(names[a].get(p, ())),
                                                                                  len(names[b].get(p, ()))))
                  for p in programs]
        correlation = [float(np.mean(spectra[a][p] * spectra[b][p])) for p in programs]
        rows.append({"font_a": a, "font_b": b, "shared_sample_names": round(float(np.mean(shared)), 3),
                     "spectrum_correlation": round(float(np.mean(correlation)), 3),
                     "programs_nearly_identical": int(np.sum(np.array(correlation) > 0.95))})
    lineage = {font.name: font.lineage for font in fonts}
    print(f"{'font a':18s} {'font b':18s} {'same lineage':>12s} {'shared names':>12s} {'spectrum r':>10s} "
          f"{'programs r>0.95':>15s}  (of {len(programs)})")
    for row in rows:
        same = lineage[row["font_a"]] == lineage[row["font_b"]]
        print(f"{row['font_a']:18s} {row['font_b']:18s} {'yes' if same else 'no':>12s} "
              f"{row['shared_sample_names']:12.0%} {row['spectrum_correlation']:10.3f} "
              f"{row['programs_nearly_identical']:15d}")
    loops = {font.name: sample_loops(uncompressed(font.path), programs) for font in fonts}
    print(f"\n{'font':18s} {'lineage':>8s} {'samples':>8s} {'median length':>14s} {'attack before loop':>19s} "
          f"{'loops < 20 ms':>14s}")
    for name, row in loops.items():
        print(f"{name:18s} {lineage[name]:>8s} {row['samples']:8d} {row['median_length_s']:12.3f} s "
              f"{row['median_attack_before_loop_s']:17.3f} s {row['loops_under_20ms']:14.0%}")
    path = write_results("soundfonts", {"programs": len(programs), "pitches": list(PITCHES), "pairs": rows,
                                        "lineage": lineage, "samples": loops})
    print(f"results: {path}")


if __name__ == "__main__":
    main()

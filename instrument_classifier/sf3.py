"""Compressed SoundFonts (.sf3) decoded once into .sf2 copies that load in a fraction of a second.

An .sf3 file is a SoundFont 2 whose samples are Ogg Vorbis streams.
FluidSynth decodes every one of them each time it loads the font: MuseScore
General (86 MB, 2203 samples) takes ~6 s to load, FluidR3Mono ~1.5 s,
against 0.5 s and 0.13 s for the decoded copies written here.  Every process
that renders pays that load (each Dask worker, each run), so it is the
largest fixed cost of generating a small dataset (README, *Benchmarks*).

:func:`uncompressed` returns the path FluidSynth should load: for an .sf3 a
decoded copy in :data:`defaults.SOUNDFONT_CACHE_DIR`, written on first use;
any other file as it is.  The copy renders **the same bytes** as the .sf3
(tested, and checked on 600 varied clips of FluidR3Mono and MuseScore
General): each sample is decoded from the byte range FluidSynth reads, by the
same 16-bit call (``sf_readf_short``) of the same libsndfile – soundfile's,
which this package imports before FluidSynth loads, so that FluidSynth's own
decoder resolves to it too.  Where no copy can be written (a read-only
folder, a file this module does not understand, a loop outside its sample,
which FluidSynth would mend differently in the two files) the .sf3 is loaded
as before, only slower.

The copy keeps every chunk of the original but the sample data and the
sample headers: ``smpl`` holds the decoded 16-bit samples, each followed by
the 46 zero words the SoundFont 2 specification asks for; ``shdr`` points at
them in sample words instead of Ogg byte offsets and drops the Vorbis flag;
``ifil`` says 2.1.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import mmap
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from .cli import atomic_path, warn
from .defaults import SOUNDFONT_CACHE_DIR

# Bumped whenever the decoded file would change, so that old copies are not reused.
FORMAT_VERSION = 1
# sampleType bit of an Ogg Vorbis sample (FLUID_SAMPLETYPE_OGG_VORBIS), and of a ROM sample.
VORBIS_FLAG = 0x10
ROM_FLAG = 0x8000
# One sample header record: name, start, end, loop start, loop end, rate, pitch, correction, link, type.
SHDR = struct.Struct("<20sIIIIIBbHH")
# Zero sample words after each sample (SoundFont 2.01, 7.10).
PADDING_WORDS = 46


class NotDecodable(ValueError):
    """The file is not an .sf3 this module can decode (:func:`uncompressed` then loads it as it is)."""


@dataclass(frozen=True)
class _Chunk:
    id: bytes
    offset: int  # of its data
    size: int


def _chunks(data: bytes | memoryview, start: int, stop: int) -> list[_Chunk]:
    """The chunks between ``start`` and ``stop``, read as FluidSynth reads them (no pad bytes:
    sf3 writers leave odd-sized lists unpadded)."""
    out = []
    while start + 8 <= stop:
        cid, size = struct.unpack_from("<4sI", data, start)
        if start + 8 + size > stop:
            raise NotDecodable(f"chunk {cid!r} runs past its parent")
        out.append(_Chunk(cid, start + 8, size))
        start += 8 + size
    return out


def _lists(data: bytes) -> dict[bytes, tuple[int, int]]:
    """The RIFF ``sfbk`` file's three lists (INFO, sdta, pdta): their data ranges."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise NotDecodable("not a SoundFont")
    lists = {}
    for chunk in _chunks(data, 12, len(data)):
        if chunk.id != b"LIST" or chunk.size < 4:
            raise NotDecodable(f"unexpected top-level chunk {chunk.id!r}")
        lists[bytes(data[chunk.offset:chunk.offset + 4])] = (chunk.offset + 4, chunk.offset + chunk.size)
    if set(lists) != {b"INFO", b"sdta", b"pdta"}:
        raise NotDecodable("a SoundFont has the lists INFO, sdta and pdta")
    return lists


def check_lists(path: str | os.PathLike) -> None:
    """NotDecodable unless the SoundFont at ``path`` holds its three lists (INFO, sdta, pdta), each within the file.

    Reads only the chunk headers (the file is mapped, not read).
    """
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        _lists(data)


def is_sf3(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a SoundFont of version 3 (``ifil`` major 3: compressed samples)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    at = head.find(b"ifil")
    return (head[:4] == b"RIFF" and head[8:12] == b"sfbk" and at >= 0 and len(head) >= at + 10
            and struct.unpack_from("<H", head, at + 8)[0] == 3)


def _decode(blob: bytes) -> np.ndarray:
    """One Ogg Vorbis stream -> int16 samples (``sf_readf_short``, as FluidSynth decodes it)."""
    try:
        samples, _ = soundfile.read(io.BytesIO(blob), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise NotDecodable(f"a compressed sample does not decode: {error}") from None
    if samples.shape[1] != 1:
        raise NotDecodable(f"a compressed sample of {samples.shape[1]} channels")
    return samples[:, 0].astype("<i2", copy=False)


def _header_chunk(cid: bytes, size: int) -> bytes:
    return struct.pack("<4sI", cid, size)


def decode_sf3(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Write ``target``: the .sf2 equivalent of the .sf3 ``source`` (same presets, decoded samples)."""
    data = Path(source).read_bytes()
    lists = _lists(data)
    info = _chunks(data, *lists[b"INFO"])
    pdta = _chunks(data, *lists[b"pdta"])
    smpl = next((c for c in _chunks(data, *lists[b"sdta"]) if c.id == b"smpl"), None)
    shdr = next((c for c in pdta if c.id == b"shdr"), None)
    if smpl is None or shdr is None or shdr.size % SHDR.size:
        raise NotDecodable("no sample data or sample headers")
    records = [list(SHDR.unpack_from(data, shdr.offset + i * SHDR.size)) for i in range(shdr.size // SHDR.size)]
    compressed = [i for i, r in enumerate(records[:-1]) if r[9] & VORBIS_FLAG and not r[9] & ROM_FLAG]
    if len(compressed) != len(records) - 1:
        raise NotDecodable("an .sf3 with uncompressed samples")
    for r in records[:-1]:
        if not r[1] < r[2] <= smpl.size:
            raise NotDecodable(f"sample {r[0].rstrip(bytes(1))!r} lies outside the sample data")

    def decoded(record: list) -> np.ndarray:
        # The byte range FluidSynth reads: start .. end - 1 (its "end" marks the last byte).
        return _decode(data[smpl.offset + record[1]:smpl.offset + record[2]])

    with open(target, "wb") as out:
        out.write(b"RIFF" + bytes(4) + b"sfbk")
        info_data = b"".join(_header_chunk(c.id, c.size) + (struct.pack("<HH", 2, 1) if c.id == b"ifil"
                                                            else data[c.offset:c.offset + c.size])
                             for c in info)
        out.write(_header_chunk(b"LIST", 4 + len(info_data)) + b"INFO" + info_data)
        sdta_at = out.tell()
        out.write(_header_chunk(b"LIST", 0) + b"sdta" + _header_chunk(b"smpl", 0))
        words = 0
        # libsndfile decodes outside Python's lock: one thread per core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for record, samples in zip(records, pool.map(decoded, records[:-1])):
                n = len(samples)
                start, stop, loop_start, loop_end = words, words + n, record[3], record[4]
                if not loop_start <= loop_end <= n:
                    # FluidSynth would mend such a loop one way in the .sf3 and another in the copy.
                    raise NotDecodable(f"sample {record[0].rstrip(bytes(1))!r} loops outside itself")
                record[1:5] = start, stop, start + loop_start, start + loop_end
                record[9] &= ~VORBIS_FLAG
                out.write(samples.tobytes() + bytes(2 * PADDING_WORDS))
                words = stop + PADDING_WORDS
        smpl_size = 2 * words
        pdta_data = b"".join(_header_chunk(c.id, c.size) + (b"".join(SHDR.pack(*r) for r in records)
                                                            if c.id == b"shdr" else data[c.offset:c.offset + c.size])
                             for c in pdta)
        out.write(_header_chunk(b"LIST", 4 + len(pdta_data)) + b"pdta" + pdta_data)
        total = out.tell()
        out.seek(4)
        out.write(struct.pack("<I", total - 8))
        out.seek(sdta_at)
        out.write(_header_chunk(b"LIST", 4 + 8 + smpl_size) + b"sdta" + _header_chunk(b"smpl", smpl_size))


def _copy_prefix(source: Path) -> str:
    """The start of every copy's name of the font at ``source`` (its name and a digest of its path)."""
    return f"{source.stem}-{hashlib.sha1(str(source).encode()).hexdigest()[:8]}"


def cached_copy_path(source: Path, cache_dir: Path) -> Path:
    """Where the decoded copy of ``source`` lives: named by the font's name and path, size and modification time."""
    stat = source.stat()
    return cache_dir / f"{_copy_prefix(source)}-{stat.st_size}-{stat.st_mtime_ns}-v{FORMAT_VERSION}.sf2"


def uncompressed(path: str | os.PathLike, cache_dir: str | os.PathLike | None = SOUNDFONT_CACHE_DIR) -> Path:
    """The file FluidSynth should load for the SoundFont ``path``.

    An .sf3: its decoded copy in ``cache_dir``, written on first use (about
    7 s for MuseScore General on 2 cores, once per machine).  One process
    writes it while the others that need it wait (a lock file beside it:
    a cluster's worker processes start together), under a temporary name
    renamed when complete, so that nobody sees half a file.  Anything else,
    or ``cache_dir=None``, or a copy that cannot be written: ``path`` itself.
    """
    path = Path(path)
    if cache_dir is None or not is_sf3(path):
        return path
    source = path.resolve()
    cache_dir = Path(cache_dir)
    target = cached_copy_path(source, cache_dir)
    if target.is_file():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / f".{source.stem}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not target.is_file():  # else another process wrote it while this one waited
                _write_copy(source, target)
    except (OSError, NotDecodable, struct.error) as error:
        warn(f"cannot decode {path.name} ({error}); loading it compressed")
        return path
    return target


def _write_copy(source: Path, target: Path) -> None:
    """Decode ``source`` into ``target`` atomically, and remove older copies of it."""
    print(f"decoding {source.name} once into {target} (FluidSynth then loads it in a fraction of the time)",
          file=sys.stderr)
    with atomic_path(target) as partial:
        decode_sf3(source, partial)
    for stale in target.parent.glob(f"{_copy_prefix(source)}-*.sf2"):
        if stale != target:
            stale.unlink(missing_ok=True)

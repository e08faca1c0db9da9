"""The temporary files and folders of the atomic writes (:mod:`cli`): their names, and clearing what killed runs left.

An atomic write works on a hidden temporary beside its target and renames
it into place when complete.  Its name says whose it is,
``.NAME.PID-HOST-TAG.tmp`` (``.tmp.EXT`` for a file), so that a later run
can tell a temporary that a live process is writing from one that a killed
run (SIGKILL, a power cut) left behind: :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

# The temporaries of atomic_dir, atomic_path and atomic_files: ".NAME.PID-HOST-XXXX.tmp" (".tmp.EXT" for a
# file); while atomic_dir swaps, the replaced folder is ".NAME.PID-HOST-oldXXXX.tmp", then, once the new one
# is in place, ".NAME.PID-HOST-delXXXX.tmp".  PID is the writing process's id, HOST a tag of its machine (a
# folder on a shared filesystem may be written from several).
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d{1,10})-(?P<host>[0-9a-f]{6})-(?P<tag>[a-z0-9_]+)\.tmp"
                        r"(\.[A-Za-z0-9]+)?")
# The names of the temporaries this process made: another of its PID is a dead process's (a container's
# processes often have the same PID run after run).
_OURS: set[str] = set()


@functools.cache
def host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def is_temporary(name: str) -> bool:
    """Whether ``name`` is that of an atomic write's temporary (:data:`_TEMPORARY`)."""
    return _TEMPORARY.fullmatch(name) is not None


def temporary_prefix(name: str) -> str:
    """The start of a temporary's name for ``name`` (see :data:`_TEMPORARY`)."""
    return f".{name}.{os.getpid()}-{host_tag()}-"


def ours(path: str | os.PathLike) -> Path:
    """``path``, noted as a temporary of this process."""
    _OURS.add(Path(path).name)
    return Path(path)


def new_temporary_name(path: Path, tag: str) -> Path:
    """A fresh temporary name beside ``path``, its tag starting with ``tag`` (nothing is created)."""
    return ours(path.with_name(f"{temporary_prefix(path.name)}{tag}{secrets.token_hex(4)}.tmp"))


def being_written(path: Path) -> bool:
    """Whether a temporary for ``path`` lies beside it: a run is writing ``path``, or was killed doing so."""
    return any(path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Clear what killed runs left in ``folder``; return the paths removed or restored.

    A temporary file or folder of :func:`atomic_dir`, :func:`atomic_path` or
    :func:`atomic_files` written on this machine by a process that no longer
    runs is removed; a replaced
    folder that a run killed in the middle of its swap left hidden is put
    back under its name if nothing took its place, else removed.
    """
    cleared = []
    try:
        candidates = sorted(Path(folder).iterdir())
    except OSError:
        return cleared
    for candidate in candidates:
        match = _TEMPORARY.fullmatch(candidate.name)
        if match is None or match["host"] != host_tag() or candidate.name in _OURS:
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _process_alive(pid):
            continue
        target = candidate.with_name(match["name"])
        try:
            if re.fullmatch(r"old[0-9a-f]{8}", match["tag"]) and candidate.is_dir() and not target.exists():
                os.replace(candidate, target)
            elif candidate.is_dir():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
        except OSError:
            continue
        cleared.append(candidate)
    return cleared


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True

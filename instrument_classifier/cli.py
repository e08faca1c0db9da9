"""What every stage script shares: one-line errors, atomic writes, run records.

A stage raises :class:`UserError` for anything the user can fix (a bad
argument, a missing file); :func:`entry_point` turns it into one line on
stderr and exit status 2, never a traceback.  Artifacts are written through
:func:`atomic_path` / :func:`atomic_dir`, so an interrupted run never leaves a
file or folder that looks finished.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from .temporaries import new_temporary_name, ours, remove_stale_temporaries, temporary_prefix


class UserError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def _umask() -> int:
    """This process's file-mode creation mask (read from /proc on Linux; set and restored elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files and folders written atomically get the modes open() and mkdir() would give them, not
# tempfile's private 0600 and 0700: a cluster's datasets are read by other users' processes.
UMASK = _umask()


def make_parent(path: Path) -> list[Path]:
    """Create ``path``'s parent folders; return those it created, deepest first; a UserError when one is a file."""
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return created
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), path.parent)
        raise UserError(f"cannot write {path}: {blocker} is a file, not a folder") from None


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks and atomic writes clean up."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` where there is a default and the help does not name one already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == [] or "default" in text
                or (isinstance(default, float) and math.isnan(default))):  # nan: a setting that is off
            # (a default of 0 is shown: 0 == False, but it is not "off")
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the stage scripts: defaults in ``--help``, a usage error in one line (exit status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def seed_type(text: str) -> int:
    """An argparse type: a random seed, an integer from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: must be from 0 to {2**32 - 1}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a number, not NaN or infinity (a setting's NaN means "off": it is not given so)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a finite number")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"invalid value {value}: must be at least {low}")
    return value


def warn(message: str) -> None:
    """Print ``<script>: warning: <message>`` on stderr, as the stages do."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "instrument_classifier"
    print(f"{prog}: warning: {printable(message)}", file=sys.stderr)


def printable(text: str) -> str:
    """``text`` (a file name, say) as valid text: bytes that are not UTF-8 shown as ``\\xff``, as ``ls -b`` shows them.

    Linux allows any bytes in a file name; Python holds those that are not
    UTF-8 as surrogates, which text files refuse and stderr would show as ``\\udcff``.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def signals_between_steps() -> Iterator[Callable[[], bool]]:
    """Hold SIGTERM and Ctrl-C back while native code runs; yield ``pending()``, raise on leaving.

    Inside, a signal is only noted: the loop polls ``pending()`` at a safe
    point (Keras: after a batch) and stops.  On leaving, the noted signal is
    raised as :class:`Terminated` or ``KeyboardInterrupt``, so cleanup runs as
    usual.  A second signal is raised at once; an ignored one (a background
    job's Ctrl-C) stays ignored.  Why: raising in the middle of
    ``model.fit`` unwound TensorFlow while its input threads still ran, and
    the process now and then aborted (glibc "free(): invalid next size")
    instead of cleaning up.  Outside the main thread it only yields.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        if noted:  # asked twice: stop now
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        noted.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGTERM, signal.SIGINT)
                if signal.getsignal(signum) is not signal.SIG_IGN}  # one ignored (a background job) stays so
    try:
        yield lambda: bool(noted)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if noted:
        raise Terminated if noted[0] == signal.SIGTERM else KeyboardInterrupt


# What a Keras backend's out-of-memory error says where its type is no MemoryError: JAX's on a GPU
# (RESOURCE_EXHAUSTED) and on a CPU, torch's on a CPU (a RuntimeError; "not enough memory" on Windows).
_OUT_OF_MEMORY_WORDS = ("RESOURCE_EXHAUSTED", "Out of memory allocating", "DefaultCPUAllocator: can't allocate memory",
                        "DefaultCPUAllocator: not enough memory")
# Left out of the one-line message: TensorFlow's op and device names, where in torch's C++ the allocation failed.
_OUT_OF_MEMORY_NOISE = re.compile(r"\{\{.*?\}\}\s*| on /job:.*|^\[enforce fail at [^\]]*\]\s*((err == 0|data)\.\s*)?")


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says memory ran out: a MemoryError, TensorFlow's ResourceExhaustedError, torch's
    OutOfMemoryError (a GPU's), or a backend's error in the words of ``_OUT_OF_MEMORY_WORDS``."""
    return (isinstance(error, MemoryError) or type(error).__name__ in ("ResourceExhaustedError", "OutOfMemoryError")
            or any(words in str(error)[:500] for words in _OUT_OF_MEMORY_WORDS))


def _out_of_memory_message(error: BaseException) -> str:
    """The one line that says so: the error's first line, less the backends' noise."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"out of memory ({_OUT_OF_MEMORY_NOISE.sub('', first)[:200]}): a smaller network, batch or dataset may fit"


def entry_point(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a script's ``main(argv=None)``: one-line errors, an exit status.

    ``UserError`` (and an ``OSError``: a folder not writable, a disk full;
    memory run out, Python's or the Keras backend's) prints
    ``<script>: error: <message>`` and returns 2;
    Ctrl-C prints ``interrupted`` and returns 130; SIGTERM (``kill``) prints
    ``terminated`` and returns 143.  Either way the temporary files and
    folders of :func:`atomic_path` / :func:`atomic_dir` are removed first.
    """

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "instrument_classifier"
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
        if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 printed as its bytes, as ls does
            sys.stdout.reconfigure(errors="surrogateescape")
        try:
            status = main(*args, **kwargs)
        except UserError as error:
            print(f"{prog}: error: {printable(str(error))}", file=sys.stderr)
            return 2
        except OSError as error:  # a disk full, a folder not writable: the system's one-line reason
            where = f": {error.filename}" if getattr(error, "filename", None) else ""
            print(printable(f"{prog}: error: {error.strerror or error}{where}"), file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print(f"{prog}: terminated", file=sys.stderr)
            return 143
        except Exception as error:
            if not _out_of_memory(error):
                raise
            print(f"{prog}: error: {_out_of_memory_message(error)}", file=sys.stderr)
            return 2
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)
        return 0 if status is None else int(status)

    return wrapper


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the extension (``suffix``, default the target's),
    so libraries that pick a format by extension (soundfile, numpy) still work.
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    created = make_parent(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.stem), suffix=f".tmp{suffix}",
                                        dir=path.parent)
    except OSError as error:
        _remove_empty(created)
        raise _named(error, path) from None
    os.fchmod(fd, 0o666 & ~UMASK)  # as open() would create it; mkstemp's 0600 would hide it from other users
    os.close(fd)
    tmp = ours(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        if isinstance(error, OSError) and str(tmp) in str(error.filename or ""):
            raise _named(error, path) from None
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Remove the parent folders a failed write made (deepest first), as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _named(error: OSError, path: Path) -> UserError:
    """An OSError on a temporary file or folder, told of the path the user gave: the temporary name means nothing."""
    return UserError(f"cannot write {path}: {error.strerror or error}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    With ``overwrite`` an existing ``path`` is replaced only once the new one is
    complete (two renames, no signal between them).  On an exception the
    temporary folder is removed; what runs killed outright (SIGKILL, a power
    cut) left beside ``path`` is cleared by the next run
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    created = make_parent(path)
    remove_stale_temporaries(path.parent)
    try:
        tmp = ours(tempfile.mkdtemp(prefix=temporary_prefix(path.name), suffix=".tmp", dir=path.parent))
    except OSError as error:
        _remove_empty(created)
        raise _named(error, path) from None
    tmp.chmod(0o777 & ~UMASK)
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise UserError(f"{path} already exists")
            old = new_temporary_name(path, "old")
            trash = new_temporary_name(path, "del")
            try:
                with signals_between_steps():  # a signal waits for the swap: never neither folder at ``path``
                    os.replace(path, old)
                    try:
                        os.replace(tmp, path)
                    except BaseException:
                        os.replace(old, path)  # the previous one back
                        raise
                    os.replace(old, trash)  # from here on it is only to be deleted, never put back
            finally:
                shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)  # the parents this run made: a failed run leaves nothing
        if isinstance(error, OSError) and str(tmp) in str(error.filename or ""):
            raise _named(error, path) from None
        raise


@contextlib.contextmanager
def atomic_files(out_dir: str | os.PathLike, *, last: str) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``out_dir``; on success move every file written there into ``out_dir``.

    For a folder of files that others (sub-reports) share: each file is
    replaced whole, and ``last`` (a page linking the others) last, so a
    complete page only links complete files.  On an exception the staging
    folder is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    created = make_parent(out_dir / last)
    remove_stale_temporaries(out_dir)
    staging = ours(tempfile.mkdtemp(prefix=temporary_prefix("report"), suffix=".tmp", dir=out_dir))
    done = False
    try:
        yield staging
        names = sorted(p.name for p in staging.iterdir() if p.name != last)
        for name in names + ([last] if (staging / last).exists() else []):
            os.replace(staging / name, out_dir / name)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_empty(created)  # a report folder this run made, left empty


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | os.PathLike, *, what: str = "JSON file") -> Any:
    """Read a JSON file, turning a missing or broken file into a UserError."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {what} {path}: {error}") from None


def library_versions(*names: str) -> dict[str, str]:
    """Python and the installed versions of the named distributions."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

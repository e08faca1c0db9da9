"""What a stage may write its output folder over: only its own earlier output, and never where the user works.

>>> check_output_dir("data/working/new-dataset", overwrite=False)   # a Path, or a UserError saying why not
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .cli import UserError


def check_replaceable_dir(path: str | os.PathLike, *, own_files: tuple[str, ...], overwrite: bool) -> Path:
    """Refuse to write a stage's output folder over anything but that stage's own earlier output.

    A missing or empty ``path`` is fine.  A folder that holds only
    ``own_files`` (what the stage writes) is replaced only with ``overwrite``.
    Anything else (a file, a link, a folder with other contents) is never
    replaced, ``overwrite`` or not: the stage would destroy what it did not write.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    if path.is_symlink() or not path.is_dir():
        raise UserError(f"{path} exists and is not a folder this stage wrote; choose another output folder")
    contents = sorted(entry.name for entry in path.iterdir())
    others = [name for name in contents if name not in own_files]
    if others:
        raise UserError(f"{path} holds files this stage did not write ({', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}); choose another output folder")
    if contents and not overwrite:
        raise UserError(f"{path} already exists (use --overwrite to replace it)")
    return path


def check_output_dir(path: str | os.PathLike, *, overwrite: bool, marker: str | None = None,
                     protected: Callable[[Path], str | None] | None = None) -> Path:
    """Refuse an existing non-empty output folder unless ``overwrite``; check it is writable.

    With ``marker`` (a file the stage writes into its folder), ``overwrite``
    replaces only a folder that holds it, i.e. an earlier output of the
    stage, and never one where ``protected(folder)`` names something (what a
    later stage made there that costs more than it, such as trained models):
    a stage must not destroy what it did not write.  Neither the current
    folder nor one that holds it is ever an output folder.
    """
    if not str(path).strip():
        raise UserError("the output folder is an empty path")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output path exists and is not a directory: {path}")
    if path.is_dir() and Path.cwd().resolve().is_relative_to(path.resolve()):
        where = "is the current folder" if Path.cwd().resolve() == path.resolve() else "holds the current folder"
        raise UserError(f"the output folder {path} {where}; name a folder of its own")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise UserError(f"output directory {path} is not empty (use --overwrite to replace it)")
        if marker is not None and not (path / marker).is_file():
            raise UserError(f"{path} holds files this stage did not write (no {marker}); choose another output folder")
        kept = protected(path) if protected is not None else None
        if kept:
            raise UserError(f"{path} holds {kept} that --overwrite would delete; move it away or choose another "
                            "output folder")
    parent = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise UserError(f"{parent} is a file, not a folder: the output folder cannot be made under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output directory is not writable: {parent}")
    return path

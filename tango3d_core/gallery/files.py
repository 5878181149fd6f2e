"""Finding and fingerprinting mesh files: the one place that lists meshes under a folder.

Used by the gallery builder, the evaluation suites (``--meshes DIR``) and the explorer
(``--gallery DIR``), so that they agree on what counts as a mesh file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ..data.meshio import SUPPORTED_EXTENSIONS

__all__ = ["find_mesh_files", "sha256_file"]


def find_mesh_files(root: str | os.PathLike[str], *,
                    extensions: Iterable[str] = SUPPORTED_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` (recursively) whose extension is a supported mesh format.

    Extensions compare case-insensitively; symbolic links to folders are not followed (no
    cycles), nor links to files outside ``root`` (the gallery stays inside its root); files are
    sorted by path, so the order is the same on every machine.
    Raises ``FileNotFoundError`` when ``root`` is not a folder or holds no mesh file.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"meshes folder {base} is not a directory")
    real_base = os.path.realpath(base)
    exts = tuple(e.lower() for e in extensions)
    found: list[Path] = []
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # unreadable folder: nothing listed from it (the builder reports files only)
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif (os.path.splitext(entry.name)[1].lower() in exts and entry.is_file()
                  and os.path.commonpath([real_base, os.path.realpath(entry.path)]) == real_base):
                found.append(Path(entry.path))  # a file link that leads out of root is skipped
    if not found:
        raise FileNotFoundError(f"meshes folder {base} holds no mesh files ({', '.join(exts)})")
    return sorted(found)


def sha256_file(path: str | os.PathLike[str], *, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``block``-byte pieces (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()

"""Listing mesh files (the one shared lister) and hashing them."""

from __future__ import annotations

import hashlib
import os

import pytest

from tango3d_core.data.meshio import SUPPORTED_EXTENSIONS
from tango3d_core.gallery.files import find_mesh_files, sha256_file

from .conftest import write_meshes


def test_finds_every_supported_file_recursively_sorted(tmp_path):
    good = write_meshes(tmp_path)
    (tmp_path / "UPPER.PLY").write_bytes(b"ply\n")       # extensions compare case-insensitively
    (tmp_path / ".obj").write_text("")                      # no stem: not a mesh file name
    (tmp_path / "folder.stl").mkdir()                       # a folder named like a mesh is not a file
    found = find_mesh_files(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    naive = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)
    assert found == naive  # the same list (and order) as the obvious rglob
    assert set(good) | {"broken.obj", "empty.ply", "UPPER.PLY"} == set(rel)
    assert found == sorted(found)


def test_symlinked_folders_are_not_followed(tmp_path):
    write_meshes(tmp_path / "real")
    os.symlink(tmp_path / "real", tmp_path / "real" / "loop")  # a cycle
    found = find_mesh_files(tmp_path)
    assert not any("loop" in p.parts for p in found)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_mesh_files(tmp_path / "missing")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no mesh files"):
        find_mesh_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_mesh_files(tmp_path / "a.txt")


def test_sha256_file_matches_hashlib_across_blocks(tmp_path):
    data = os.urandom(3 * 1024 + 17)
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    assert sha256_file(p, block=1024) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()

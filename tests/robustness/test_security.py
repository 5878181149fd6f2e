"""Security: no pickle anywhere, uploaded names never become paths, files a mesh refers to and
gallery / example choices stay inside their configured roots."""

from __future__ import annotations

import io
import os
import re
import shutil
import tokenize
from pathlib import Path

import numpy as np
import pytest
import trimesh

from app.explorer import UserError

from .conftest import EXAMPLES, ROOT, file_access, written
from .corpus import glb

# --------------------------------------------------------------------------- no pickle

SOURCE_DIRS = ("tango3d_core", "app", "benchmarks", "tests")
SOURCE_FILES = ("launch.py",)
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", "runs", "data_cache", "out", "node_modules", ".venv"}

# Code that deserialises pickles (arbitrary code execution on load), directly or through a
# library call that does it underneath.
FORBIDDEN = {
    r"\bimport\s+(c?pickle|dill|cloudpickle|shelve|marshal|joblib)\b": "a pickle-family module",
    r"\bfrom\s+(c?pickle|dill|cloudpickle|shelve|marshal|joblib)\s+import\b": "a pickle-family module",
    r"\btorch\.load\s*\(": "torch.load (pickle)",
    r"\btorch\.hub\.load\s*\(": "torch.hub.load (downloads and unpickles)",
    r"allow_pickle\s*=\s*True": "numpy loading with pickles allowed",
    r"weights_only\s*=\s*False": "torch.load with full unpickling",
    r"\bread_pickle\s*\(": "pandas.read_pickle",
    r"\bsam_model_registry\s*\[[^\]]*\]\s*\(\s*checkpoint\s*=":
        "segment-anything's builder, which torch.loads the file",
}
# Hugging Face loaders fall back to pickled ``pytorch_model.bin`` unless told otherwise.
HF_MODEL_CALL = re.compile(r"\b(AutoModel\w*|\w+Model|\w+ForImageClassification)\.from_pretrained\s*\(")
ST_CALL = re.compile(r"\bSentenceTransformer\s*\(")
TRIGGERS = re.compile(r"pickle|dill|shelve|marshal|joblib|torch\.(hub\.)?load|weights_only|sam_model_registry"
                      r"|from_pretrained|SentenceTransformer")


def _python_files() -> list[Path]:
    files = [ROOT / f for f in SOURCE_FILES]
    for d in SOURCE_DIRS:
        for root, dirs, names in os.walk(ROOT / d):
            dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.endswith(".egg-info")]
            files += [Path(root) / n for n in names if n.endswith(".py")]
    return sorted(files)


def _code_only(src: str) -> str:
    """``src`` with comments and triple-quoted strings (docstrings) blanked out, line numbers
    kept: prose may name what the code must not do."""
    out = src.splitlines(keepends=True)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (tokenize.TokenError, SyntaxError):
        return src
    for tok in tokens:
        docstring = tok.type == tokenize.STRING and tok.string.lstrip("rbuRBU").startswith(('"""', "'''"))
        if tok.type == tokenize.COMMENT or docstring:
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                line = out[r - 1]
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(line.rstrip("\n"))
                out[r - 1] = line[:a] + " " * (b - a) + line[b:]
    return "".join(out)


def _call_text(src: str, start: int) -> str:
    """The source of a call from its opening parenthesis to the matching one."""
    depth, i = 0, src.index("(", start)
    for j in range(i, min(len(src), i + 4000)):
        depth += {"(": 1, ")": -1}.get(src[j], 0)
        if depth == 0:
            return src[i: j + 1]
    return src[i:]


def test_no_pickle_loading_anywhere_in_the_source_tree():
    this = Path(__file__).resolve()
    problems = []
    for path in _python_files():
        if path.resolve() == this:
            continue
        src = path.read_text(encoding="utf-8", errors="replace")
        if not TRIGGERS.search(src):
            continue  # nothing to look at: skip the (slow) tokenizer
        src = _code_only(src)
        rel = path.relative_to(ROOT)
        for pattern, what in FORBIDDEN.items():
            for m in re.finditer(pattern, src):
                problems.append(f"{rel}:{src.count(chr(10), 0, m.start()) + 1}: {what}")
        for m in HF_MODEL_CALL.finditer(src):
            if "use_safetensors=True" not in _call_text(src, m.start()):
                problems.append(f"{rel}:{src.count(chr(10), 0, m.start()) + 1}: {m.group(1)}.from_pretrained "
                                "without use_safetensors=True (falls back to pickled .bin weights)")
        for m in ST_CALL.finditer(src):
            if "use_safetensors" not in _call_text(src, m.start()):
                problems.append(f"{rel}:{src.count(chr(10), 0, m.start()) + 1}: SentenceTransformer(...) without "
                                "model_kwargs={'use_safetensors': True}")
    assert not problems, "pickle-based loading found:\n" + "\n".join(problems)


def test_the_forbidden_patterns_do_match():
    """The grep above is only as good as its patterns: each one catches its example."""
    examples = ["import pickle", "from joblib import load", "x = torch.load(f)", "torch.hub.load('a', 'b')",
                "np.load(p, allow_pickle=True)", "torch.load(p, weights_only=False)", "pd.read_pickle(p)",
                "sam_model_registry['vit_b'](checkpoint=str(p))"]
    for pattern, text in zip(FORBIDDEN, examples):
        assert re.search(pattern, text), (pattern, text)
    assert HF_MODEL_CALL.search("AutoModel.from_pretrained(p, local_files_only=True)")
    assert not HF_MODEL_CALL.search("AutoConfig.from_pretrained(p)")  # configs are JSON
    assert "torch.load" not in _code_only('def f():\n    """Never torch.load(x)."""  # nor torch.load(y)\n')
    assert "torch.load" in _code_only("x = torch.load(f)  # fine\n")


PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy_pickle"}


def test_no_pickle_files_in_the_repository_and_the_checkpoint_is_safetensors():
    found = []
    for root, dirs, names in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not x.endswith(".egg-info")]
        found += [str(Path(root, n).relative_to(ROOT)) for n in names if Path(n).suffix.lower() in PICKLE_SUFFIXES]
    assert not found, found
    ckpt = ROOT / "assets" / "checkpoint"
    if ckpt.is_dir():
        suffixes = {p.suffix for p in ckpt.iterdir() if p.is_file()}
        assert suffixes <= {".safetensors", ".json", ".md", ".txt"}, suffixes
        assert ".safetensors" in suffixes


# ------------------------------------------------------------ names never become paths

HOSTILE_NAMES = [
    "../../../../etc/evil.ply", "/etc/passwd.ply", "..\\..\\windows\\system32\\evil.ply", "a\x00b.ply",
    "CON.ply", "~/.ssh/authorized_keys.ply", "$(touch pwned).ply", "x" * 5000 + ".ply", "évil 名前.ply",
    "<script>alert(1)</script>.ply", "\n\r\t.ply", ".ply", "...", "",
]


def test_uploaded_names_never_become_paths(make_explorer, tmp_path):
    """Whatever the user's file name, every file the server writes is inside its work folder,
    and the name shown back is plain text without a path."""
    ex = make_explorer()
    s = ex.open_session("a")
    src = tmp_path / "incoming" / "upload.bin"
    src.parent.mkdir()
    shutil.copy(EXAMPLES / "mug.ply", src)
    work = str(ex.work_dir.resolve())
    for name in HOSTILE_NAMES:
        with file_access() as access:
            try:
                status = ex.load_mesh_file(s, src, display_name=name)
            except UserError as e:  # "..." and "" have no mesh extension: refused, that is fine
                status = str(e)
                assert "not a supported mesh" in status, status
            else:
                assert "/" not in s.mesh_name and "\\" not in s.mesh_name and "\x00" not in s.mesh_name
                assert "<" not in s.mesh_name and len(s.mesh_name) <= 80
        outside = [p for p in written(access) if not p.startswith(work)]
        assert not outside, (name, outside)
    assert not any(p.name.startswith(("evil", "passwd", "pwned")) for p in tmp_path.rglob("*"))


def test_files_a_mesh_refers_to_stay_inside_its_folder(make_explorer, tmp_path):
    """An uploaded OBJ or GLB that points at files outside the upload folder (relative ``..``
    paths, absolute paths, file:// URIs) never gets them read."""
    ex = make_explorer()
    s = ex.open_session("a")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "evil.mtl").write_text("newmtl m\nmap_Kd tex.png\n")
    shutil.copy(EXAMPLES / "mug.png", secret / "tex.png")
    refs = ["../../secret/evil.mtl", "../secret/evil.mtl", str(secret / "evil.mtl"), "/etc/passwd"]
    obj = ("".join(f"mtllib {r}\n" for r in refs)
           + "usemtl m\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    (tmp_path / "refs.obj").write_text(obj)

    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes()
    header = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}, {"source": 1}, {"source": 2}],
        "images": [{"uri": "../../secret/tex.png"}, {"uri": (secret / "tex.png").as_uri()},
                   {"uri": str(secret / "tex.png")}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0],
                       "max": [1, 1, 0]}, {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                        {"buffer": 0, "byteOffset": 36, "byteLength": 24}],
        "buffers": [{"byteLength": 60}, {"byteLength": 60, "uri": "../../secret/evil.mtl"}],
    }
    (tmp_path / "refs.glb").write_bytes(glb(header, pos + uv))

    for name in ("refs.obj", "refs.glb"):
        with file_access() as access:
            try:
                ex.load_mesh_file(s, tmp_path / name, display_name=name)
                image = getattr(getattr(s.mesh.visual, "material", None), "image", None)
                assert image is None or image.size != (320, 320)  # not the outside texture
            except UserError as e:
                assert "not found" in str(e) or "not a readable" in str(e), str(e)
        read = [p for p, _ in access if p.startswith(str(secret)) or p.startswith("/etc/")]
        assert not read, (name, read)


def test_gallery_example_and_result_choices_cannot_escape(make_explorer, tmp_path):
    """Choices that come back from the page (gallery keys, example and result indices, export
    kinds) are looked up, never joined into paths."""
    from app.gallery import Gallery

    gallery = Gallery.procedural(per_category=1, categories=["mug", "chair"], cache_dir=tmp_path / "gallery")
    ex = make_explorer(gallery=gallery)
    assert gallery.wait(ex.primary, timeout=120)
    s = ex.open_session("a")
    bad_keys = ["../../../../etc/passwd", "/etc/passwd", "procedural-mug-100/../../x", "procedural-mug-100\x00",
                "%2e%2e%2fetc", ""]
    with file_access() as access:
        for key in bad_keys:
            with pytest.raises(UserError):
                ex.set_many(s, [key])
            ex.load_example(s, 0)
            with pytest.raises(UserError):
                ex.load_second_gallery(s, key)
        for index in (-1, 5, 10**12, "1; rm -rf /"):
            with pytest.raises((UserError, ValueError)):
                ex.load_example(s, index)  # type: ignore[arg-type]
            with pytest.raises((UserError, ValueError)):
                ex.load_hit(s, index)  # type: ignore[arg-type]
        for kind in ("../../x", "/etc/passwd", "ply/../../x"):
            with pytest.raises(UserError):
                ex.export(s, kind)  # type: ignore[arg-type]
    roots = (str(ex.work_dir.resolve()), str(EXAMPLES), str((tmp_path / "gallery").resolve()))
    touched = [p for p, _ in access if "etc/passwd" in p or ("/tmp/" in p and not p.startswith(roots))]
    assert not touched, touched


def test_gallery_folder_is_confined_to_its_root(tmp_path, provider):
    """``--gallery DIR`` indexes the meshes under DIR: a symbolic link that leads out of DIR
    (to a file or a folder elsewhere) is not followed."""
    from app.gallery import Gallery

    root, outside = tmp_path / "gallery", tmp_path / "private"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    trimesh.creation.box().export(root / "sub" / "box.ply")
    trimesh.creation.icosphere().export(outside / "secret.ply")
    (root / "link.ply").symlink_to(outside / "secret.ply")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    g = Gallery.from_directory(root, cache_dir=tmp_path / "cache")
    names = sorted(it.name for it in g.items)
    assert names == ["sub/box.ply"], names

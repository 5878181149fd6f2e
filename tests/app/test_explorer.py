"""Event handlers of the explorer, called directly (no browser): uploads, clicks, comparison,
retrieval, sessions, and every way an upload can be bad."""

from __future__ import annotations

import re
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from app.explorer import Explorer, Limits, UserError, surface_colors
from app.gallery import Gallery
from app.overlay import point_colors
from tango3d_core.providers import BackprojectionProvider

LIMITS = Limits(num_points=1024, timeout_s=60.0, max_sessions=4)


@pytest.fixture
def explorer(make_explorer, provider):
    return make_explorer(provider)


def _example_index(explorer, name):
    return next(i for i, e in enumerate(explorer.examples) if e.name == name)


# ------------------------------------------------------------------------- clicks

def test_pixel_click_colours_the_shape_by_similarity(explorer, provider):
    s = explorer.open_session("a")
    panels, axis = explorer.load_example(s, _example_index(explorer, "chair"))
    assert axis == "z" and panels[0].size == (320, 320) and panels[1] is None
    base_colours = s.viewer.colors(0).copy()
    explorer.set_overlay(s, matching="features")
    panels = explorer.click_pixel(s, (160, 150))
    # Reference: the model's own API, then a plain argmax in numpy.
    img_f = provider.encode_image(s.image)
    shp = provider.encode_shape(s.mesh, num_points=LIMITS.num_points, seed=0)
    sims = (shp.dense.numpy() @ img_f.sample([[160.0, 150.0]])[0].numpy())
    np.testing.assert_allclose(s.best_points["tango3d"], shp.points.numpy()[np.argmax(sims)], atol=1e-6)
    np.testing.assert_allclose(s.viewer.marker(0, "best"), shp.points.numpy()[np.argmax(sims)], atol=2e-3)
    expected, _ = point_colors(torch.from_numpy(sims), s.shapes["tango3d"].base, s.overlay)
    assert np.abs(s.viewer.colors(0).astype(int) - expected.astype(int)).max() <= 1
    assert (s.viewer.colors(0) != base_colours).any()
    # The clicked pixel is marked on the image; far from it nothing changed.
    diff = (np.asarray(panels[0]) != np.asarray(s.image)).any(axis=2)
    ys, xs = np.nonzero(diff)
    assert abs(xs.mean() - 160) < 2 and abs(ys.mean() - 150) < 2 and not diff[:100].any()
    assert s.last_ms > 0 and "Pixel (160, 150)" in s.status


def test_pixel_click_is_pose_verified_by_default(explorer, provider):
    from tango3d_core.models.pose import estimate_pose, pose_match

    s = explorer.open_session("a")
    explorer.load_example(s, _example_index(explorer, "chair"))
    assert s.overlay.matching == "pose"
    explorer.click_pixel(s, (160, 150))
    img_f = provider.encode_image(s.image)
    assert img_f.geometry is not None and img_f.geometry.foreground_source in ("border", "predicted")
    shp = provider.encode_shape(s.mesh, num_points=LIMITS.num_points, seed=0)
    pose = estimate_pose(img_f, shp)
    scores = pose_match(img_f, shp, [[160.0, 150.0]], pose=pose)[0].numpy()
    np.testing.assert_allclose(s.best_points["tango3d"], shp.points.numpy()[np.argmax(scores)], atol=1e-6)
    assert "pose-verified" in s.status and f"yaw {np.degrees(pose.yaw):.0f}" in s.status
    expected, _ = point_colors(torch.from_numpy(scores), s.shapes["tango3d"].base, s.overlay)
    assert np.abs(s.viewer.colors(0).astype(int) - expected.astype(int)).max() <= 1
    # the pose is estimated once per image and shape, not per click
    cached = s.poses["tango3d"]
    explorer.click_pixel(s, (150, 160))
    assert s.poses["tango3d"] is cached
    # switching to features only gives the cosine argmax again
    explorer.set_overlay(s, matching="features")
    sims = shp.dense.numpy() @ img_f.sample([[150.0, 160.0]])[0].numpy()
    np.testing.assert_allclose(s.best_points["tango3d"], shp.points.numpy()[np.argmax(sims)], atol=1e-6)
    with pytest.raises(UserError, match="matching"):
        explorer.set_overlay(s, matching="telepathy")


def test_pose_falls_back_to_features_on_a_busy_background(explorer, tmp_path):
    """The test model has no foreground head: on noise there is no object to fit a pose to."""
    s = explorer.open_session("a")
    explorer.load_example(s, _example_index(explorer, "chair"))
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path)
    explorer.load_image(s, str(path))
    explorer.click_pixel(s, (40, 40))
    assert "features only" in s.status and "plain background" in s.status


def test_click_positions_are_clamped_and_validated(explorer):
    s = explorer.open_session("a")
    explorer.load_example(s, 0)
    explorer.click_pixel(s, (10_000, -5))
    assert s.last_query == ("pixel", (319.0, 0.0))
    with pytest.raises(UserError, match="did not arrive"):
        explorer.click_pixel(s, None)
    with pytest.raises(UserError, match="did not arrive"):
        explorer.click_pixel(s, (float("nan"), 3))


def test_point_click_gives_a_heat_map_and_is_polled_once(explorer, provider):
    s = explorer.open_session("a")
    explorer.load_example(s, _example_index(explorer, "mug"))
    explorer.set_overlay(s, matching="features")
    assert explorer.poll(s) is None
    p = s.shapes["tango3d"].features.points[17].numpy()
    explorer.click_point(s, 0, p)
    panels = explorer.poll(s)
    assert panels is not None and explorer.poll(s) is None
    # Best pixel = argmax of the point's feature against the image's dense map (naive loop).
    q = s.shapes["tango3d"].features.query(torch.tensor(p[None], dtype=torch.float32))[0]
    img_f = s.image_features["tango3d"]
    w, h = s.image.size
    best, best_val = None, -np.inf
    for y in range(0, h, 1):
        row = img_f.dense.new_tensor([[x, y] for x in range(w)])
        from tango3d_core.models.ops import sample_map_at_pixels

        vals = sample_map_at_pixels(img_f.dense[None], row[None], (w, h))[0] @ q
        i = int(vals.argmax())
        if float(vals[i]) > best_val:
            best, best_val = (i, y), float(vals[i])
    assert s.best_pixels["tango3d"] == best
    assert panels[0].size == s.image.size
    assert not np.array_equal(np.asarray(panels[0]), np.asarray(s.image))
    np.testing.assert_allclose(s.viewer.marker(0, "query"), p, atol=2e-3)
    assert s.viewer.marker(0, "best") is None


def test_point_click_is_pose_verified_by_default(explorer):
    from tango3d_core.models.pose import pose_match

    s = explorer.open_session("a")
    explorer.load_example(s, _example_index(explorer, "chair"))
    shp = s.shapes["tango3d"].features
    p = shp.points[40].numpy()
    explorer.click_point(s, 0, p)
    assert "pose-verified" in s.status
    pose = s.poses["tango3d"][2]
    img_f = s.image_features["tango3d"]
    w, h = s.image.size
    grid = torch.tensor([[x, y] for y in range(h) for x in range(w)], dtype=torch.float32)
    scores = pose_match(img_f, shp, grid, pose=pose, points=p[None])[:, 0]
    x, y = s.best_pixels["tango3d"]
    # the map is scored on the dense grid and upsampled; pose_match scores each pixel exactly
    assert float(scores[y * w + x]) >= float(scores.max()) - 0.05
    cosine = (img_f.sample(grid) @ shp.query(torch.tensor(p[None], dtype=torch.float32))[0])
    assert float(scores[y * w + x]) > float(scores[int(cosine.argmax())]) - 1e-6


def test_point_click_without_image_only_says_so(explorer, examples_dir):
    s = explorer.open_session("a")
    explorer.load_mesh_file(s, examples_dir / "chair.ply")
    explorer.click_point(s, 0, np.zeros(3))
    assert "Upload an image" in s.status and explorer.poll(s) is not None


def test_click_before_inputs(explorer, examples_dir):
    s = explorer.open_session("a")
    with pytest.raises(UserError, match="image"):
        explorer.click_pixel(s, (1, 1))
    explorer.load_image(s, examples_dir / "chair.png")
    with pytest.raises(UserError, match="mesh"):
        explorer.click_pixel(s, (1, 1))


def test_overlay_settings_redraw_the_last_click(explorer):
    s = explorer.open_session("a")
    explorer.load_example(s, 0)
    assert explorer.set_overlay(s, colormap="viridis") is None  # nothing clicked yet
    explorer.click_pixel(s, (150, 150))
    explorer.set_overlay(s, mode="top-k", k=25, opacity=1.0)
    changed = (s.viewer.colors(0) != s.shapes["tango3d"].base_u8).any(axis=1)
    assert changed.sum() <= 25 and changed.sum() >= 20  # top-k points (a few may equal their base)
    with pytest.raises(UserError, match="Invalid display setting"):
        explorer.set_overlay(s, opacity=3.0)


# ------------------------------------------------------------------------ uploads

def test_each_upload_is_encoded_once_by_content(make_explorer, provider, counting, examples_dir, tmp_path):
    c = counting(provider)
    ex = make_explorer(c)
    a, b = ex.open_session("a"), ex.open_session("b")
    shutil.copy(examples_dir / "mug.png", tmp_path / "renamed.png")
    shutil.copy(examples_dir / "mug.ply", tmp_path / "renamed.ply")
    ex.load_image(a, examples_dir / "mug.png")
    ex.load_image(b, tmp_path / "renamed.png")
    ex.load_mesh_file(a, examples_dir / "mug.ply")
    ex.load_mesh_file(b, tmp_path / "renamed.ply", display_name="renamed.ply")
    assert c.calls == {"image": 1, "shape": 1, "text": 0}
    ex.load_mesh_file(a, examples_dir / "mug.ply", up_axis="y")  # another up axis is another shape
    assert c.calls["shape"] == 2


def test_uploaded_names_never_become_paths(explorer, examples_dir, tmp_path):
    s = explorer.open_session("a")
    weird = tmp_path / "a b;rm -rf $HOME.ply"
    shutil.copy(examples_dir / "chair.ply", weird)
    status = explorer.load_mesh_file(s, weird, display_name="../../etc/evil<script>.ply")
    stored = list((explorer.work_dir / "uploads").iterdir())
    assert len(stored) == 1 and all(c in "0123456789abcdef" for c in stored[0].stem) and stored[0].suffix == ".ply"
    assert "evilscript.ply" in status and "/" not in s.mesh_name and "<" not in s.mesh_name


def test_bad_images_get_clear_messages(explorer, tmp_path):
    (tmp_path / "photo.png").write_bytes(b"hello, I am text")
    s = explorer.open_session("a")
    with pytest.raises(UserError, match="'photo.png': it is a text file, not an image"):
        explorer.load_image(s, tmp_path / "photo.png")
    for name in ("anim.gif", "pic.bmp"):  # GIF (first frame) and BMP are read too
        Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / name)
        assert explorer.load_image(s, tmp_path / name)[0].getpixel((4, 4)) == (200, 30, 30)


def test_truncated_image(explorer, examples_dir, tmp_path):
    data = (examples_dir / "chair.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated"):
        explorer.load_image(explorer.open_session("a"), tmp_path / "cut.png")


def test_image_bounds(make_explorer, provider, tmp_path):
    ex = make_explorer(provider, limits=Limits(num_points=256, max_image_pixels=10_000, max_image_bytes=5_000,
                                               image_side=64))
    s = ex.open_session("a")
    Image.new("RGB", (200, 100), (9, 9, 9)).save(tmp_path / "big.png")
    with pytest.raises(UserError, match="200 x 100 pixels .*the limit is 10,000 pixels"):
        ex.load_image(s, tmp_path / "big.png")
    noise = (np.random.default_rng(0).random((90, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tmp_path / "heavy.png")
    with pytest.raises(UserError, match="above the 4.9 kB limit"):
        ex.load_image(s, tmp_path / "heavy.png")
    Image.new("RGBA", (90, 60), (255, 0, 0, 0)).save(tmp_path / "ok.webp")
    panels = ex.load_image(s, tmp_path / "ok.webp")
    assert panels[0].size == (64, 43) and panels[0].mode == "RGB"
    assert panels[0].getpixel((5, 5)) == (255, 255, 255)  # transparent -> white


def test_bad_meshes_get_clear_messages(explorer, tmp_path):
    s = explorer.open_session("a")
    (tmp_path / "x.txt").write_text("v 0 0 0")
    with pytest.raises(UserError, match="not a supported mesh"):
        explorer.load_mesh_file(s, tmp_path / "x.txt")
    (tmp_path / "upload.bin").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 99999999\nend_header\n1 2 3\n")
    with pytest.raises(UserError) as err:
        explorer.load_mesh_file(s, tmp_path / "upload.bin", display_name="my_model.ply")
    msg = str(err.value)
    assert "my_model.ply" in msg and "Traceback" not in msg
    assert not re.search(r"[0-9a-f]{64}", msg)  # the stored (digest) name never shows


def test_mesh_file_size_bound(make_explorer, provider, examples_dir):
    ex = make_explorer(provider, limits=Limits(num_points=256, max_mesh_bytes=1000))
    with pytest.raises(UserError, match="MB; the limit"):
        ex.load_mesh_file(ex.open_session("a"), examples_dir / "chair.ply")


def test_large_meshes_are_decimated_to_the_face_cap(make_explorer, provider, tmp_path):
    import trimesh

    ex = make_explorer(provider, limits=Limits(num_points=256, max_faces=5000))
    trimesh.creation.icosphere(subdivisions=5).export(tmp_path / "dense.ply")   # 20480 faces
    status = ex.load_mesh_file(ex.open_session("a"), tmp_path / "dense.ply")
    assert "decimated from 20,480" in status


def test_long_work_times_out(make_explorer, provider, counting, examples_dir):
    slow = counting(provider, delay=2.0)
    ex = make_explorer(slow, limits=Limits(num_points=256, timeout_s=0.3))
    with pytest.raises(UserError, match="took longer than 0.3 s"):
        ex.load_image(ex.open_session("a"), examples_dir / "chair.png")


def test_up_axis_switch_reloads_the_mesh(explorer):
    s = explorer.open_session("a")
    _, axis = explorer.load_example(s, _example_index(explorer, "bottle"))
    assert axis == "y" and np.argmax(np.ptp(s.mesh.vertices, axis=0)) == 2
    explorer.set_up_axis(s, "z")
    assert s.up_axis == "z" and np.argmax(np.ptp(s.mesh.vertices, axis=0)) == 1


def test_surface_colors_follow_texture_and_vertex_colours(examples_dir):
    from tango3d_core import load_mesh

    bottle = load_mesh(examples_dir / "bottle.glb", up_axis="y")
    # Points on the label band (cream) and low on the body (green glass).
    z0, z1 = bottle.bounds[:, 2]
    r = 0.2287
    label = np.array([[r * 0.999, 0.0, z0 + 0.35 * (z1 - z0)]])
    body = np.array([[0.0, r * 0.999, z0 + 0.08 * (z1 - z0)]])
    cols = surface_colors(bottle, np.concatenate([label, body]))
    assert np.abs(cols[0].astype(int) - [235, 222, 190]).max() <= 3   # cream label
    assert np.abs(cols[1].astype(int) - [40, 120, 70]).max() <= 3     # green glass
    chair = load_mesh(examples_dir / "chair.ply")
    v = np.asarray(chair.vertices[:50])
    np.testing.assert_allclose(surface_colors(chair, v).astype(int),
                               np.asarray(chair.visual.vertex_colors)[:50, :3].astype(int), atol=1)


# ---------------------------------------------------------------------- sessions

def test_two_sessions_never_see_each_other(explorer):
    a, b = explorer.open_session("a"), explorer.open_session("b")
    explorer.load_example(a, 0)
    explorer.load_example(b, 1)
    before_b = b.viewer.colors(0).copy()
    explorer.click_pixel(a, (150, 150))
    explorer.click_point(a, 0, a.shapes["tango3d"].features.points[0].numpy())
    assert b.last_query is None and explorer.poll(b) is None
    np.testing.assert_array_equal(b.viewer.colors(0), before_b)
    assert a.viewer.port != b.viewer.port
    assert a.mesh_name != b.mesh_name


def test_session_limit_closes_the_least_recent(make_explorer, provider):
    ex = make_explorer(provider, limits=Limits(num_points=256, max_sessions=2))
    s1, s2 = ex.open_session("1"), ex.open_session("2")
    ex._live(s1)                      # s1 used last: s2 is the least recent
    s3 = ex.open_session("3")
    assert ex.sessions() == ["1", "3"] and s2.closed and s2.viewer.closed and not s3.closed
    with pytest.raises(UserError, match="Reload the page"):
        ex.load_example(s2, 0)
    ex.close_session("1")
    ex.close_session("1")             # idempotent
    assert s1.closed and ex.sessions() == ["3"]
    again = ex.open_session("3")      # same id (a reconnect): the old object is closed, ...
    assert s3.closed and not again.closed
    ex.close_session(s3)              # ... and its late delete callback leaves the new one alone
    assert ex.sessions() == ["3"] and not again.closed


def test_no_session_is_an_error(explorer):
    with pytest.raises(UserError, match="Reload"):
        explorer.click_pixel(None, (1, 1))


# --------------------------------------------------------------------- comparison

def test_compare_two_providers_on_the_same_click(make_explorer, provider):
    def make(name):
        return BackprojectionProvider(provider.encode_image, name=name, num_views=2, view_size=64)

    ex = make_explorer(provider, make_provider=make, compare=["backprojection"])
    s = ex.open_session("a")
    ex.load_example(s, 0)
    panels = ex.set_compare(s, "backprojection")
    assert s.providers == ["tango3d", "backprojection"] and panels[1] is not None
    assert s.viewer.slots() == [0, 1]
    panels = ex.click_pixel(s, (150, 160))
    assert set(s.best_points) == {"tango3d", "backprojection"}
    for slot in (0, 1):
        assert s.viewer.marker(slot, "best") is not None
    assert np.array_equal(np.asarray(panels[0]), np.asarray(panels[1]))  # both show the clicked pixel
    ex.click_point(s, 1, s.best_points["backprojection"])
    panels = ex.poll(s)
    assert set(s.best_pixels) == {"tango3d", "backprojection"} and panels[1] is not None
    panels = ex.set_compare(s, None)
    assert s.providers == ["tango3d"] and panels[1] is None and s.viewer.slots() == [0]
    with pytest.raises(UserError, match="Unknown provider"):
        ex.set_compare(s, "nonexistent")


def test_compare_with_a_failing_provider(make_explorer, provider):
    def make(name):
        raise RuntimeError("weights missing")

    ex = make_explorer(provider, make_provider=make, compare=["broken"])
    with pytest.raises(UserError, match="could not be started: weights missing"):
        ex.set_compare(ex.open_session("a"), "broken")


# ---------------------------------------------------------------------- retrieval

def test_text_and_image_search_then_load_a_result(make_explorer, provider, tmp_path):
    gallery = Gallery.procedural(per_category=1, categories=["chair", "mug", "lamp"], cache_dir=tmp_path / "g")
    ex = make_explorer(provider, gallery=gallery)
    assert gallery.wait(provider, timeout=120)
    s = ex.open_session("a")
    hits = ex.search_text(s, "a chair with armrests", k=2)
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    q = provider.encode_text(["a chair with armrests"])[0]
    emb = gallery.build(provider)
    assert hits[0].item.key == gallery.items[int((emb @ q).argmax())].key
    with pytest.raises(UserError, match="first"):
        ex.search_image(s)
    ex.load_example(s, 0)
    hits = ex.search_image(s, k=3)
    assert len(hits) == 3
    status = ex.load_hit(s, 1)
    assert s.mesh_name == hits[1].item.name and "ready" in status
    shown = s.mesh
    ex.set_up_axis(s, "y")  # gallery shapes keep their orientation; the choice is for the next upload
    assert s.mesh is shown and s.up_axis == "y"
    with pytest.raises(UserError, match="search again"):
        ex.load_hit(s, 7)
    with pytest.raises(UserError, match="Type a description"):
        ex.search_text(s, "   ")


def test_search_when_gallery_missing_or_text_unsupported(make_explorer, provider, tmp_path):
    ex = make_explorer(provider)
    with pytest.raises(UserError, match="No gallery"):
        ex.search_text(ex.open_session("a"), "chair")
    bp = BackprojectionProvider(provider.encode_image, num_views=2, view_size=32)
    ex2 = make_explorer(bp, gallery=Gallery.procedural(per_category=1, categories=["mug"], cache_dir=tmp_path))
    with pytest.raises(UserError, match="no text encoder"):
        ex2.search_text(ex2.open_session("b"), "a mug")


def _fake_pose(monkeypatch, ex, scores):
    """Replace ``estimate_pose`` in the explorer by a known score per gallery key (read back from
    the explorer's shape cache, where the re-rank keeps each hit's features); a key scored None
    cannot be fitted (ValueError, as for too little foreground). Returns the keys asked, in order."""
    asked = []

    def fake(image, shape):
        key = next(k[2].removeprefix("gallery-") for k in ex.shape_cache.keys()
                   if ex.shape_cache.get(k).features is shape)
        asked.append(key)
        if scores[key] is None:
            raise ValueError("too little foreground")
        return SimpleNamespace(score=scores[key])

    monkeypatch.setattr("app.explorer.estimate_pose", fake)
    return asked


def test_image_search_pose_rerank_orders_the_top_10_by_fit(make_explorer, provider, tmp_path, monkeypatch):
    gallery = Gallery.procedural(per_category=4, categories=["chair", "mug", "lamp"], cache_dir=tmp_path / "g")
    ex = make_explorer(provider, gallery=gallery, viewer=False)
    assert gallery.wait(provider, timeout=120)
    s = ex.open_session("a")
    ex.load_image(s, ex.examples_dir / "chair.png")
    rng = np.random.default_rng(0)
    scores = {it.key: float(v) for it, v in zip(gallery.items, rng.permutation(len(gallery.items)))}
    asked = _fake_pose(monkeypatch, ex, scores)

    plain = ex.search_image(s, k=12)                                  # off: the global order, no fit
    assert asked == [] and s.status == "12 shapes found; click one to load it."
    assert [h.score for h in plain] == sorted((h.score for h in plain), reverse=True)
    scores[plain[3].item.key] = None                                  # one hit cannot be fitted
    scores[plain[5].item.key] = scores[plain[1].item.key]             # a tie keeps the global order
    steps = []
    hits = ex.search_image(s, k=12, pose=True, progress=lambda frac, desc: steps.append(desc))
    top = plain[:10]
    fitted = sorted((h for h in top if scores[h.item.key] is not None), key=lambda h: -scores[h.item.key])
    expected = fitted + [plain[3]] + plain[10:]                       # below the top 10: unchanged
    assert [h.item.key for h in hits] == [h.item.key for h in expected]
    assert sorted(asked) == sorted(h.item.key for h in top)           # only the top 10 are fitted
    assert [h.item.key for h in hits].index(plain[1].item.key) < [h.item.key for h in hits].index(plain[5].item.key)
    assert steps and set(steps) == {"Fitting the pose to 10 shapes"}
    assert re.fullmatch(r"12 shapes found, top 10 re-ranked by pose fit in \d+\.\d s \(1 could not be fitted "
                        r"and come after the others\); click one to load it\.", s.status), s.status
    assert s.search_hits == hits

    # k below 10: the gallery is still asked for 10, and the first k of the re-ranked list shown.
    short = ex.search_image(s, k=4, pose=True)
    assert [h.item.key for h in short] == [h.item.key for h in expected[:4]]
    assert s.status.startswith("4 shapes found, top 10 re-ranked by pose fit in ")
    # Off again: the same hits as before the re-rank, and no fit.
    del asked[:]
    assert [h.item.key for h in ex.search_image(s, k=8)] == [h.item.key for h in plain[:8]] and asked == []
    assert s.status == "8 shapes found; click one to load it."


def _chair_query_over_small_gallery(make_explorer, provider, cache_dir, session_id):
    """An explorer (no viewer) over a 3-shape gallery embedded by ``provider``, and a session whose
    image is the chair example."""
    gallery = Gallery.procedural(per_category=1, categories=["chair", "mug", "lamp"], cache_dir=cache_dir)
    ex = make_explorer(provider, gallery=gallery, viewer=False)
    assert gallery.wait(provider, timeout=120)
    s = ex.open_session(session_id)
    ex.load_image(s, ex.examples_dir / "chair.png")
    return ex, s


def test_image_search_pose_rerank_falls_back_to_the_global_order(make_explorer, provider, tmp_path, monkeypatch):
    import dataclasses

    # A provider without geometry (back-projection of a 2D encoder): nothing to fit.
    bp = BackprojectionProvider(provider.encode_image, num_views=2, view_size=32)
    ex, s = _chair_query_over_small_gallery(make_explorer, bp, tmp_path / "g", "a")
    plain = ex.search_image(s, k=3)
    hits = ex.search_image(s, k=3, pose=True)
    assert [h.item.key for h in hits] == [h.item.key for h in plain]
    assert s.status == ("3 shapes found in the global order (pose re-rank skipped: the provider 'backprojection' "
                        "predicts no geometry for the image; it needs a Tango3D model); click one to load it.")

    # A fit that runs past limits.timeout_s: abandoned, the global order kept.
    ex2, s2 = _chair_query_over_small_gallery(make_explorer, provider, tmp_path / "g2", "b")
    plain = ex2.search_image(s2, k=3)

    def slow(image, shape):
        time.sleep(1.0)
        raise AssertionError("abandoned before it returns")

    monkeypatch.setattr("app.explorer.estimate_pose", slow)
    ex2.limits = dataclasses.replace(ex2.limits, timeout_s=0.2)
    hits = ex2.search_image(s2, k=3, pose=True)
    assert [h.item.key for h in hits] == [h.item.key for h in plain]
    assert s2.status == ("3 shapes found in the global order (pose re-rank skipped: it took longer than 0.2 s and "
                         "was abandoned); click one to load it.")


# ------------------------------------------------------------------- 3D <-> 3D

def test_second_shape_and_a_3d_click_highlight_the_match(explorer, examples_dir):
    s = explorer.open_session("a")
    with pytest.raises(UserError, match="first shape"):
        explorer.load_second_file(s, examples_dir / "mug.ply")
    explorer.load_mesh_file(s, examples_dir / "chair.ply")         # no image: 3D <-> 3D still works
    status = explorer.load_second_file(s, examples_dir / "mug.ply")
    assert "mug.ply" in status and s.viewer.slots() == [0, 1]
    before = s.viewer.colors(1).copy()
    a, b = s.shapes["tango3d"].features, s.shapes_b["tango3d"].features
    p = a.points[40].numpy().astype(np.float64)
    explorer.click_point(s, 0, p)
    assert s.last_query[0] == "point" and s.last_query[2] == "a" and explorer.poll(s) is not None
    # Reference: the clicked point's feature against every point of the other shape (numpy).
    q = a.query(torch.tensor(p[None], dtype=torch.float32))[0].numpy()
    sims = b.dense.numpy() @ q
    np.testing.assert_allclose(s.match_points[("b", "tango3d")], b.points.numpy()[np.argmax(sims)], atol=1e-6)
    np.testing.assert_allclose(s.viewer.marker(1, "best"), b.points.numpy()[np.argmax(sims)], atol=2e-3)
    np.testing.assert_allclose(s.viewer.marker(0, "query"), p, atol=2e-3)
    expected, _ = point_colors(torch.from_numpy(sims), s.shapes_b["tango3d"].base, s.overlay)
    assert np.abs(s.viewer.colors(1).astype(int) - expected.astype(int)).max() <= 1
    assert (s.viewer.colors(1) != before).any()
    assert "best match on 'mug.ply'" in s.status
    # The other way round: a click on the second shape marks the best point on the first.
    explorer.click_shape_point(s, "b", 7)
    assert s.last_query[2] == "b" and s.viewer.marker(0, "best") is not None and s.viewer.marker(1, "query") is not None
    explorer.clear_second(s)
    assert s.viewer.slots() == [0] and s.second_mesh is None and s.last_query is None


def test_second_shape_from_the_gallery_and_with_a_comparison_provider(make_explorer, provider, tmp_path):
    gallery = Gallery.procedural(per_category=1, categories=["chair", "mug"], cache_dir=tmp_path / "g")

    def make(name):
        return BackprojectionProvider(provider.encode_image, name=name, num_views=2, view_size=48)

    ex = make_explorer(provider, gallery=gallery, make_provider=make, compare=["backprojection"])
    s = ex.open_session("a")
    ex.load_example(s, 0)
    ex.click_pixel(s, (150, 150))
    ex.load_second_gallery(s, gallery.items[1].key)
    # The last pixel query now also colours the second shape.
    assert s.second_name == gallery.items[1].name and ("b", "tango3d") in s.match_points
    ex.set_compare(s, "backprojection")
    assert s.viewer.slots() == [0, 1, 2, 3] and set(s.shapes_b) == {"tango3d", "backprojection"}
    ex.click_shape_point(s, "a", 3)
    assert {("b", "tango3d"), ("b", "backprojection")} <= set(s.match_points)
    with pytest.raises(UserError, match="does not exist"):
        ex.load_second_gallery(s, "no-such-key")


# --------------------------------------------------------------- pixel -> many

def test_pixel_to_many_gallery_shapes(make_explorer, provider, counting, tmp_path):
    gallery = Gallery.procedural(per_category=1, categories=["chair", "mug", "lamp"], cache_dir=tmp_path / "g")
    c = counting(provider)
    ex = make_explorer(c, gallery=gallery)
    s = ex.open_session("a")
    keys = ex.default_many(s)
    assert keys == [it.key for it in gallery.items]                # one per category
    with pytest.raises(UserError, match="at most"):
        ex.set_many(s, [f"k{i}" for i in range(9)])
    with pytest.raises(UserError, match="not in the gallery"):
        ex.set_many(s, ["nope"])
    ex.load_image(s, ex.examples_dir / "chair.png")
    assert gallery.wait(c, timeout=120)                            # its own encodes are done
    shape_calls = c.calls["shape"]
    assert ex.set_many(s, keys) == []                              # nothing clicked yet
    ex.click_pixel(s, (160, 150))                                  # no mesh needed for pixel -> many
    assert len(s.many_results) == 3
    f = s.image_features["tango3d"].sample([[160.0, 150.0]])[0]
    for (img, caption), it in zip(s.many_results, gallery.items):
        card = ex.many_cache.get((c.fingerprint, it.key))
        assert caption.endswith(it.name) and f"{float((card.dense @ f).max()):.3f}" in caption
        assert img.size == (card.index.shape[1], card.index.shape[0])
    ex.set_many(s, keys)                                            # cached: no new encodes
    assert c.calls["shape"] == shape_calls + 3 and len(s.many_results) == 3


# --------------------------------------------------------------- mask transfer

def test_mask_transfer_from_a_file_and_the_editor(explorer, examples_dir, tmp_path):
    from app.masks import foreground_mask, mask_prototypes, mask_to_layer, region_scores

    s = explorer.open_session("a")
    mask = np.zeros((320, 320), bool)
    mask[60:140, 100:220] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    with pytest.raises(UserError, match="image"):
        explorer.mask_from_file(s, tmp_path / "mask.png")
    explorer.load_example(s, _example_index(explorer, "chair"))
    panels = explorer.mask_from_file(s, tmp_path / "mask.png")
    assert s.last_query == ("mask",) and panels[0].size == (320, 320)
    # Reference: the prototypes and the score, then the threshold.
    inside, outside = mask_prototypes(s.image_features["tango3d"], mask, foreground_mask(s.image))
    score = region_scores(s.shapes["tango3d"].features.dense, inside, outside).numpy()
    res = s.results[("a", "tango3d")]
    np.testing.assert_allclose(res.scores, score, atol=1e-5)
    np.testing.assert_array_equal(res.labels, score >= 0.0)
    changed = (s.viewer.colors(0) != s.shapes["tango3d"].base_u8).any(axis=1)
    assert changed.sum() <= res.labels.sum()                         # only the region is coloured
    explorer.set_mask_threshold(s, 0.05)
    np.testing.assert_array_equal(s.results[("a", "tango3d")].labels, score >= 0.05)
    # The same mask drawn in the editor gives the same region.
    explorer.mask_from_editor(s, {"background": None, "layers": [mask_to_layer(mask)], "composite": None})
    np.testing.assert_allclose(s.results[("a", "tango3d")].scores, score, atol=1e-5)
    with pytest.raises(UserError, match="Nothing is drawn"):
        explorer.mask_from_editor(s, {"background": None, "layers": [], "composite": None})
    with pytest.raises(UserError, match="threshold"):
        explorer.set_mask_threshold(s, 3.0)
    Image.new("L", (320, 320)).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="empty"):
        explorer.mask_from_file(s, tmp_path / "empty.png")
    assert s.last_query == ("mask",)                                 # a bad mask loses nothing


def test_sam_button_says_what_is_missing(explorer):
    s = explorer.open_session("a")
    if explorer.sam_available:
        pytest.skip("SAM is installed here")
    with pytest.raises(UserError, match="SAM unavailable: needs"):
        explorer.propose_mask(s)


# ---------------------------------------------------------------- feature view

def test_feature_view_shares_one_projection(explorer):
    from app.masks import foreground_mask
    from app.pca import fit_pca, image_pca_rgb

    s = explorer.open_session("a")
    explorer.load_example(s, _example_index(explorer, "mug"))
    panels = explorer.feature_view(s)
    img_f = s.image_features["tango3d"]
    d, h, w = img_f.dense.shape
    fg = foreground_mask(s.image)
    small = np.asarray(Image.fromarray(fg.astype(np.uint8) * 255).resize((w, h), Image.BOX)) > 127
    rows = img_f.dense.reshape(d, -1).T[torch.from_numpy(small.reshape(-1))]
    proj = fit_pca([rows, s.shapes["tango3d"].features.dense])
    np.testing.assert_array_equal(s.viewer.colors(0), proj.to_u8(s.shapes["tango3d"].features.dense))
    assert np.abs(np.asarray(panels[0]).astype(int)
                  - np.asarray(image_pca_rgb(proj, img_f.dense, s.image.size, dim_mask=fg)).astype(int)).max() <= 1
    assert "principal components" in s.status
    explorer.click_pixel(s, (100, 100))                              # clicks work again afterwards
    assert s.last_query[0] == "pixel"


# --------------------------------------------------------------------- exports

def test_exports_are_named_by_the_server_and_removed_on_close(explorer, examples_dir):
    import io

    import trimesh

    s = explorer.open_session("a")
    explorer.load_example(s, _example_index(explorer, "chair"))
    with pytest.raises(UserError, match="Nothing to export"):
        explorer.export(s, "ply")
    explorer.set_overlay(s, matching="features")  # the .npy then holds plain cosine similarities
    explorer.click_pixel(s, (160, 150))
    ply = explorer.export(s, "ply")
    assert ply.name.startswith("tango3d-heat-") and ply.suffix == ".ply"
    back = trimesh.load(io.BytesIO(ply.read_bytes()), file_type="ply", process=False)
    assert len(back.vertices) == len(s.mesh.vertices)
    from app.export import nearest_point_index

    idx = nearest_point_index(s.mesh.vertices, s.shapes["tango3d"].features.points.numpy())
    np.testing.assert_array_equal(np.asarray(back.visual.vertex_colors)[:, :3], s.viewer.colors(0)[idx])
    npy = np.load(explorer.export(s, "npy"))
    assert npy.shape == (LIMITS.num_points, 4)
    img_f = s.image_features["tango3d"]
    sims = s.shapes["tango3d"].features.dense @ img_f.sample([[160.0, 150.0]])[0]
    np.testing.assert_allclose(npy[:, 3], sims.numpy(), atol=1e-5)
    glb = explorer.export(s, "glb")
    png = explorer.export(s, "png")                      # no browser connected: the server's render
    assert glb.suffix == ".glb" and png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UserError, match="no second shape"):
        explorer.export(s, "ply", shape="b")
    folder = ply.parent
    explorer.close_session(s)
    assert not folder.exists()


def test_fallback_view_mode(make_explorer, provider):
    ex = make_explorer(provider, viewer="fallback")
    s = ex.open_session("a")
    assert s.viewer.port is None and ex.viewer_port(s.viewer_token) is None
    ex.load_example(s, 0)
    path, new = s.viewer.glb_path()
    assert new and path.suffix == ".glb"
    ex.click_pixel(s, (150, 150))
    path2, new2 = s.viewer.glb_path()
    assert new2 and path2 != path and s.viewer.marker(0, "best") is not None


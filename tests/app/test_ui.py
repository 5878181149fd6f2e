"""The Gradio layer: error handling of handlers, the viewer iframe, the Blocks layout."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import gradio as gr
import pytest

from app.explorer import Explorer, UserError
from app.ui import _guard, _payload_path, _proxied_viewer_html, _viewer_html, build_ui


def test_guard_turns_user_errors_into_a_status_line():
    @_guard(3, 2)
    def handler(x):
        raise UserError("The mesh has no faces.")

    out = handler(1)
    assert len(out) == 3 and out[2] == "⚠️ The mesh has no faces."
    assert all(isinstance(o, type(gr.skip())) for o in out[:2])


def test_guard_logs_bugs_and_hides_the_traceback(caplog):
    @_guard(1, 0)
    def handler():
        raise KeyError("internal detail")

    with caplog.at_level(logging.ERROR, logger="tango3d.app"):
        out = handler()
    assert out.startswith("⚠️ Something went wrong (KeyError)") and "internal detail" not in out
    assert "Traceback" in caplog.text and "internal detail" in caplog.text


def test_guard_can_restore_outputs():
    @_guard(2, 1, restore=lambda x: ("previous image", None))
    def handler(x):
        raise UserError("bad upload")

    assert handler(1) == ("previous image", "⚠️ bad upload")


def test_guard_passes_results_through():
    assert _guard(2, 1)(lambda a, b: (a, b))(1, 2) == (1, 2)


@pytest.mark.parametrize("host,expected", [
    ("127.0.0.1:7860", "http://127.0.0.1:9001/"),
    ("lab-box.local:7860", "http://lab-box.local:9001/"),
    ("[::1]:7860", "http://[::1]:9001/"),
    ("", "http://127.0.0.1:9001/"),
])
def test_viewer_iframe_follows_the_page_host(host, expected):
    req = SimpleNamespace(headers={"host": host})
    assert f'src="{expected}"' in _viewer_html(req, 9001)


def test_proxied_iframe_is_relative_to_the_page():
    html = _proxied_viewer_html("AbCdEfGhIjKlMnOpQrStUv")
    assert 'src="viser/AbCdEfGhIjKlMnOpQrStUv/"' in html


def test_viewer_iframe_escapes_hostile_hosts():
    req = SimpleNamespace(headers={"host": 'evil"><script>alert(1)</script>'})
    html = _viewer_html(req, 9001)
    assert "<script>" not in html and html.count('"') == html.count('="') * 2


def test_payload_path():
    assert _payload_path(None) is None
    assert _payload_path({"path": "/tmp/x.png"}) == "/tmp/x.png"
    assert _payload_path(SimpleNamespace(path="/tmp/y.png")) == "/tmp/y.png"


def test_blocks_have_every_control(provider, examples_dir, tmp_path):
    from app.examples import load_examples

    ex = Explorer(provider, examples=(examples_dir, load_examples(examples_dir)), work_dir=tmp_path, viewer=False,
                  compare_choices=["backprojection"])
    try:
        demo = build_ui(ex)
        ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
        for needed in ("query-image", "compare-image", "mesh-file", "up-axis", "examples", "viewer-frame",
                       "colormap", "mode", "compare", "query-text", "search-text", "search-image", "search-pose",
                       "results", "status", "mask-editor", "mask-transfer", "mask-threshold", "mask-file",
                       "sam-propose", "second-file", "second-pick", "second-apply", "second-clear", "load-as", "many-pick",
                       "many-apply", "many-results", "pca", "vae-recon", "export-ply", "export-glb", "export-npy",
                       "export-png", "export-file", "fallback-view"):
            assert needed in ids, needed
        timers = [b for b in demo.blocks.values() if isinstance(b, gr.Timer)]
        assert len(timers) == 1 and timers[0].value <= 0.5
        # Under "once" (Gradio's default) one pending tick silences every later one: the heat map
        # of a 3D click could then never reach the page.
        ticks = [d for d in demo.get_config_file()["dependencies"]
                 if [timers[0]._id, "tick"] in [list(t) for t in d["targets"]]]
        assert len(ticks) == 1 and ticks[0]["trigger_mode"] == "multiple"
        # The VAE reconstruction answers in the status line; a click while one runs is dropped.
        by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
        recon = [d for d in demo.get_config_file()["dependencies"]
                 if [by_id["vae-recon"]._id, "click"] in [list(t) for t in d["targets"]]]
        assert len(recon) == 1 and recon[0]["outputs"] == [by_id["status"]._id]
        assert recon[0]["trigger_mode"] == "once"
        # The pose re-rank is opt-in: off by default, read by the image search.
        assert by_id["search-pose"].value is False and "pose fit" in by_id["search-pose"].label
        search = [d for d in demo.get_config_file()["dependencies"]
                  if [by_id["search-image"]._id, "click"] in [list(t) for t in d["targets"]]]
        assert len(search) == 1 and by_id["search-pose"]._id in search[0]["inputs"]
        assert search[0]["outputs"] == [by_id["results"]._id, by_id["status"]._id]
        sam = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "sam-propose")
        if not ex.sam_available:  # the button itself says what is missing
            assert "SAM unavailable" in sam.value and not sam.interactive
        fallback = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "fallback-view")
        assert not fallback.visible
    finally:
        ex.shutdown()


def test_fallback_mode_shows_model3d_instead_of_the_iframe(provider, examples_dir, tmp_path):
    from app.examples import load_examples

    ex = Explorer(provider, examples=(examples_dir, load_examples(examples_dir)), work_dir=tmp_path,
                  viewer="fallback")
    try:
        demo = build_ui(ex)
        by_id = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
        assert by_id["fallback-view"].visible and not by_id["viewer-frame"].visible
    finally:
        ex.shutdown()

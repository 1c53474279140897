"""The offline headless-Chromium helper passes a self-contained page and catches one that reaches out."""

import pytest

from .browser import available, check_page

pytestmark = pytest.mark.skipif(not available(), reason="chromium not installed (apt-get install chromium)")

# 1x1 red PNG.
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="


def test_self_contained_page_loads_offline(tmp_path):
    html = tmp_path / "ok.html"
    html.write_text(
        f'<!doctype html><html><body><img src="data:image/png;base64,{PIXEL}" width="40" height="40">'
        '<script>document.body.insertAdjacentHTML("beforeend", "<p id=done>ran</p>")</script></body></html>'
    )
    shot = tmp_path / "ok.png"
    result = check_page(html, shot, wait_for="#done", timeout=30)
    assert result.failed == []
    assert result.console_errors == []
    assert result.images == 1
    assert '<p id="done">ran</p>' in result.dom
    assert result.requests == [html.as_uri()]
    assert result.screenshot == shot
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_remote_image_is_reported_as_failed(tmp_path):
    html = tmp_path / "remote.html"
    html.write_text('<!doctype html><html><body><img src="https://example.com/x.png"></body></html>')
    result = check_page(html, timeout=30)
    assert [url for url, _ in result.failed] == ["https://example.com/x.png"]
    assert result.images == 0
    assert "https://example.com/x.png" in result.requests

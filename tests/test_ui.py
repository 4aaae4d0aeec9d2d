"""The page and its data endpoints through Flask's test client: markup, headers, caching.

What a browser does with them (CSP, plots, forms, rollback, retraining) is in
tests/test_page_browser.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_app import TOKEN, add_version, make_model

from service.http import create_app
from service.http.ui import ASSET_TYPES, STATIC_DIR
from service.store import LocalStore

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "models", "house-price")


@pytest.fixture
def client(tmp_path):
    return create_app({"model_dir": tmp_path / "models", "reload_interval": 0,
                       "api_token": TOKEN}).test_client()


class Markup(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = tag

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline.append(f"<{self._open}>{data.strip()[:60]}")

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def parse(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    return markup


def test_the_page_is_html_with_a_strict_content_security_policy(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = dict(
        (d.split(" ", 1) + [""])[:2] for d in r.headers["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "unsafe" not in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_has_no_inline_script_style_or_handler(client):
    markup = parse(client.get("/").get_data(as_text=True))
    assert markup.inline == []
    assert markup.all("style") == []
    for tag, attrs in markup.tags:
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in ("href", "src", "action"):
            assert not (attrs.get(name) or "").startswith(("javascript:", "http:", "https:", "//"))
    scripts = markup.all("script")
    assert len(scripts) == 1 and scripts[0]["src"].startswith("/static/page.js?v=")


def test_every_form_control_has_a_label_and_the_page_a_language(client):
    markup = parse(client.get("/").get_data(as_text=True))
    assert markup.all("html")[0]["lang"] == "en"
    assert len(markup.all("h1")) == 1
    labelled = {attrs["for"] for attrs in markup.all("label")}
    controls = [a for t, a in markup.tags if t in ("input", "select", "textarea")]
    assert controls
    for attrs in controls:
        assert attrs["id"] in labelled, attrs
    ids = [attrs["id"] for _, attrs in markup.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))
    described = {a["aria-describedby"] for _, a in markup.tags if a.get("aria-describedby")}
    assert described <= set(ids)
    assert markup.all("main") and markup.all("nav")
    live = [a for _, a in markup.tags if a.get("aria-live")]
    assert {a["id"] for a in live} >= {"status", "prediction", "retrain-status"}


def test_the_retrain_form_offers_the_training_parameters(client):
    from service.params import TRAINING_PARAMS

    markup = parse(client.get("/").get_data(as_text=True))
    names = {a.get("name") for t, a in markup.tags if t in ("input", "select")}
    assert "file" in names
    assert {p.name for p in TRAINING_PARAMS if p.http} <= names
    assert "tolerance" not in names  # the operator's, not the API's
    schedules = [a["value"] for t, a in markup.tags if t == "option"]
    assert {"adaptive", "constant", "invscaling"} <= set(schedules)


def test_the_page_needs_no_model_and_no_token(tmp_path):
    app = create_app({"model_dir": tmp_path / "empty"})
    r = app.test_client().get("/")
    assert r.status_code == 200
    assert b"house-price" in r.data


def test_the_page_names_the_model_escaped(tmp_path):
    app = create_app({"model_dir": tmp_path / "m", "model_name": "prices-2026.v1_b"})
    assert b"<title>prices-2026.v1_b" in app.test_client().get("/").data


def test_the_page_revalidates_by_etag(client):
    first = client.get("/")
    assert first.headers["Cache-Control"] == "no-cache"
    etag = first.headers["ETag"]
    again = client.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert "Content-Security-Policy" in again.headers


@pytest.mark.parametrize("name", sorted(ASSET_TYPES))
def test_assets_are_served_with_their_type_and_cached_by_digest(client, name):
    body = (STATIC_DIR / name).read_bytes()
    digest = hashlib.sha256(body).hexdigest()[:16]
    page = client.get("/").get_data(as_text=True)
    assert f"/static/{name}?v={digest}" in page

    r = client.get(f"/static/{name}?v={digest}")
    assert r.status_code == 200
    assert r.data == body
    assert r.headers["Content-Type"] == ASSET_TYPES[name]
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["X-Content-Type-Options"] == "nosniff"

    stale = client.get(f"/static/{name}?v=0000")  # an old link: revalidate, never keep
    assert stale.headers["Cache-Control"] == "no-cache"
    assert client.get(f"/static/{name}", headers={"If-None-Match": r.headers["ETag"]}
                      ).status_code == 304


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/..%2fui.py", "/static/"])
def test_an_unknown_asset_is_a_json_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "not_found"


def test_the_script_reads_no_token_from_a_url_or_cookie():
    script = (STATIC_DIR / "page.js").read_text()
    assert "document.cookie" not in script
    assert "localStorage" not in script
    assert "location.search" not in script and "URLSearchParams" not in script
    assert "sessionStorage" in script
    assert "eval(" not in script and "innerHTML" not in script


# -- the data the page reads: conditional GETs -------------------------------------------------


def test_model_is_tagged_with_its_version_and_answers_304(client, store):
    first = add_version(store, make_model())
    r = client.get("/model")
    assert r.headers["ETag"] == f'"{first}"'
    assert r.headers["Cache-Control"] == "no-cache"
    body = r.get_json()
    assert body["name"] == "house-price"
    assert body["target_scale"] == 80_000.0
    model = make_model()
    assert [f["standardized"] for f in body["schema"]] == pytest.approx(list(model.coef_std))

    cached = client.get("/model", headers={"If-None-Match": f'"{first}"'})
    assert cached.status_code == 304
    assert cached.data == b""
    assert cached.headers["X-Model-Version"] == first

    second = add_version(store, make_model(intercept=1.0))
    fresh = client.get("/model", headers={"If-None-Match": f'"{first}"'})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] == f'"{second}"'
    assert fresh.get_json()["model_version"] == second


def test_models_and_history_are_tagged_by_content(client, store):
    first = add_version(store, make_model())
    r = client.get("/models")
    etag = r.headers["ETag"]
    assert client.get("/models", headers={"If-None-Match": etag}).status_code == 304

    h = client.get("/models/history")
    assert h.get_json() == {"history": [
        {"time": store.history()[0]["time"], "version": first, "previous": None}]}
    assert client.get("/models/history",
                      headers={"If-None-Match": h.headers["ETag"]}).status_code == 304

    second = add_version(store, make_model(intercept=1.0))
    assert client.get("/models", headers={"If-None-Match": etag}).status_code == 200
    assert client.get(f"/models/{first}/activate").status_code == 405
    client.post(f"/models/{first}/activate", headers={"Authorization": f"Bearer {TOKEN}",
                                                       "If-Match": second})
    entries = client.get("/models/history").get_json()["history"]
    assert [(e["version"], e["previous"]) for e in entries] == [
        (first, None), (second, first), (first, second)]
    assert all(set(e) == {"time", "version", "previous"} for e in entries)  # no pid


def test_models_list_the_gate_of_each_version(client, store):
    model = make_model()
    version = store.save(model, {"metrics": {}, "gate": {"reason": "forced"}}, parent=None)
    assert client.get("/models").get_json()["models"][0]["gate"] == {"reason": "forced"}
    assert version


@pytest.mark.slow
def test_the_wheel_ships_the_template_and_assets(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
         str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("sgdserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "service/http/templates/index.html" in names
    assert "service/http/templates/option.html" in names
    for name in ASSET_TYPES:
        assert f"service/http/static/{name}" in names

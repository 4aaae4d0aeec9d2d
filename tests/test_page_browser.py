"""The page in a real headless browser: Debian's Chromium driven by Selenium, against gunicorn.

The store holds two versions trained by the real pipeline. The browser runs with a fresh
profile and no network but loopback; chromedriver is given by path (no Selenium Manager).
Without Chromium these tests skip on a developer machine and fail in CI, where .ci/run installs
it and sets BROWSER_TESTS=required.

Screenshots at 375 and 1440 px are written under a temporary directory whose path is printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service.data import make_houses, write_houses_csv
from service.store import LocalStore
from service.training import train

from helpers import REPO, GunicornServer, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_env")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "page-test-token"
AXE = REPO / "tests" / "vendor" / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
SAMPLE = REPO / "service" / "sample_data" / "houses.csv"
WAIT = 30.0

# Records every CSP violation from the first script on; injected by the browser, not the page.
_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return None
    return (f"{' and '.join(missing)} not found: apt-get install -y chromium chromium-driver "
            "(and pip install -e '.[test]')")


@pytest.fixture(scope="module")
def browser_paths() -> None:
    reason = _browser_missing()
    if reason is None:
        return
    if os.environ.get("BROWSER_TESTS") == "required":
        pytest.fail(f"BROWSER_TESTS=required but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """A store with two versions: the bundled sample, then 3,000 rows (promoted)."""
    root = tmp_path_factory.mktemp("page-store")
    store = LocalStore(root / "models", "house-price")
    train(store, SAMPLE, target="price")
    second = root / "houses-3000.csv"
    write_houses_csv(second, 3000, seed=3)
    train(store, second, target="price", force=True)
    assert len(store.version_ids()) == 2
    return root / "models"


@pytest.fixture(scope="module")
def server(browser_paths, store_dir, tmp_path_factory) -> Iterator[GunicornServer]:
    env = {"SGDSERVE_MODEL_DIR": str(store_dir), "SGDSERVE_API_TOKEN": TOKEN,
           "SGDSERVE_RELOAD_INTERVAL": "0.2",
           "SGDSERVE_LOG_DIR": str(tmp_path_factory.mktemp("page-logs"))}
    with GunicornServer(tmp_path_factory.mktemp("page-gunicorn"), workers=2, env=env) as srv:
        _traffic_with_feedback(srv)
        yield srv


def _traffic_with_feedback(server: GunicornServer) -> None:
    """Predictions of bigger houses, and feedback at higher prices: something to monitor."""
    X, y, names = make_houses(600, seed=8)
    X[:, 0] *= 1.5
    rows = [dict(zip(names, r, strict=True)) for r in X.tolist()]
    ids = requests.post(server.url + "/predict", json={"instances": rows}, timeout=30).json()[
        "prediction_ids"]
    items = [{"prediction_id": p, "actual": 1.3 * float(a)} for p, a in zip(ids, y, strict=True)]
    r = requests.post(server.url + "/feedback", json={"feedback": items}, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 202 and r.json()["accepted"] == 600


@pytest.fixture(scope="module")
def shots(artifact_dir) -> Path:
    """Where screenshots go; the path is printed at the end of the run (tests/conftest.py)."""
    return artifact_dir("sgdserve-page-screenshots-")


def _start_browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--window-size=1440,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which downloads drivers) is never used.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _VIOLATIONS})
    return driver


@pytest.fixture(scope="module")
def browser(browser_paths, tmp_path_factory) -> Iterator[Any]:
    driver = _start_browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser, server) -> Any:
    """The page, loaded and drawn, at 1440 px; the browser log drained."""
    open_page(browser, server.url)
    return browser


def open_page(driver: Any, url: str, width: int = 1440) -> None:
    driver.set_window_size(width, 1000)
    driver.get(url + "/")
    wait_until(lambda: driver.execute_script("return document.body.dataset.ready") == "true",
               WAIT, "the page to draw its data")


def console(driver: Any) -> list[dict[str, Any]]:
    return driver.get_log("browser")


def errors(entries: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in entries if e["level"] in ("SEVERE", "ERROR")]


def api(server: GunicornServer, path: str) -> Any:
    r = requests.get(server.url + path, timeout=10)
    r.raise_for_status()
    return r.json()


def text_of(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def confirm_dialog(driver: Any, token: str = TOKEN) -> None:
    """Type the token in the open dialog and press Enter, as a keyboard user does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    wait_until(lambda: driver.execute_script("return document.getElementById('confirm').open"),
               WAIT, "the confirmation dialog")
    assert driver.execute_script("return document.activeElement.id") == "confirm-token"
    driver.execute_script("document.getElementById('confirm-token').value = ''")
    ActionChains(driver).send_keys(token).send_keys(Keys.ENTER).perform()
    wait_until(lambda: not driver.execute_script(
        "return document.getElementById('confirm').open"), WAIT, "the dialog to close")


# -- loading ------------------------------------------------------------------------------------


def test_the_page_loads_with_no_console_error_and_no_csp_violation(browser, server):
    console(browser)  # drain anything from before
    open_page(browser, server.url)
    entries = console(browser)
    assert errors(entries) == [], entries
    assert browser.execute_script("return window.__violations") == []
    model = api(server, "/model")
    assert text_of(browser, "status") == f"Serving version {model['model_version']}."
    # The policy is enforced: a script injected into the page does not run, and is reported.
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
        "document.body.append(s);"
        "const d = document.createElement('div'); d.setAttribute('style', 'color: red');"
        "document.body.append(d);")
    wait_until(lambda: len(browser.execute_script("return window.__violations")) >= 2, WAIT,
               "the CSP to report the injected script and style")
    assert browser.execute_script("return window.__ran") is None
    blocked = browser.execute_script("return window.__violations")
    assert any(v.startswith("script-src") for v in blocked), blocked
    assert any(v.startswith("style-src") for v in blocked), blocked
    console(browser)


def test_the_page_and_its_data_take_a_few_requests(page, server):
    wait_until(lambda: page.execute_script("return document.body.dataset.monitoring"), WAIT,
               "the monitoring report")
    entries = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => [e.name, e.transferSize,"
        " e.encodedBodySize]).concat([[location.href, performance.getEntriesByType("
        "'navigation')[0].transferSize, 0]])")
    paths = sorted(e[0].replace(server.url, "").split("?")[0] for e in entries)
    assert paths == ["/", "/model", "/models", "/models/history", "/monitoring",
                     "/static/icon.svg", "/static/page.css", "/static/page.js"] or paths == [
        "/", "/model", "/models", "/models/history", "/monitoring", "/static/page.css",
        "/static/page.js"]


# -- the card and the plots -----------------------------------------------------------------------


def test_the_model_card_shows_the_active_version_its_data_and_equation(page, server):
    model = api(server, "/model")
    card = text_of(page, "card-body")
    manifest = model["manifest"]
    assert model["model_version"] in card
    assert manifest["data"]["file"] in card
    assert manifest["data"]["sha256"][:12] in card
    assert manifest["parent"] in card
    assert manifest["gate"]["reason"] in card
    equation = text_of(page, "equation")
    assert equation.startswith("price = ")
    for name in model["features"]:
        assert f"× {name}" in equation
    rows = page.find_elements("css selector", "#metrics-table tbody tr")
    assert [r.find_element("tag name", "th").text for r in rows] == ["RMSE", "MAE", "R²"]
    holdout = model["metrics"]["holdout"]
    assert f"{holdout['r2']:.4f}" in rows[2].text
    assert "vs parent" in text_of(page, "metrics-table")


def _plot(driver: Any, plot_id: str) -> dict[str, Any]:
    return driver.execute_script(
        """
        const fig = document.getElementById(arguments[0]);
        const svg = fig.querySelector('svg');
        if (!svg) return null;
        const box = svg.getBoundingClientRect();
        const q = (sel) => fig.querySelectorAll('.marks ' + sel);
        return {width: box.width, height: box.height, points: q('.pt').length,
                bars: q('.bar').length,
                heights: Array.from(q('.bar')).map(b => +b.getAttribute('height')),
                label: svg.getAttribute('aria-labelledby'),
                alt: fig.querySelector('.alt').textContent, lines: q('.ideal').length};
        """, plot_id)


def test_every_plot_is_drawn_with_its_points_and_a_text_alternative(page, server):
    model = api(server, "/model")
    manifest = model["manifest"]
    sample = manifest["holdout_sample"]
    n = len(sample["actual"])
    assert n > 100

    loss = _plot(page, "plot-loss")
    assert loss["points"] == len(manifest["loss_history"])
    fit = _plot(page, "plot-fit")
    assert fit["points"] == n and fit["lines"] == 1  # and the line y = x
    residuals = _plot(page, "plot-residuals")
    assert residuals["points"] == n and residuals["lines"] == 1
    histogram = _plot(page, "plot-histogram")
    assert histogram["bars"] >= 5 and sum(h > 0 for h in histogram["heights"]) >= 3
    coefficients = _plot(page, "plot-coefficients")
    assert coefficients["bars"] == len(model["features"])
    versions = _plot(page, "plot-versions")
    assert versions["points"] == len(api(server, "/models")["models"])
    for plot in (loss, fit, residuals, histogram, coefficients, versions):
        assert plot["width"] > 200 and plot["height"] > 150
        assert len(plot["alt"]) > 40
    assert f"{n} holdout rows" in fit["alt"]

    # Not blank: the browser painted marks in the points' colour inside the plot area.
    png = page.find_element("css selector", "#plot-fit svg").screenshot_as_png
    assert len(png) > 5000


def test_each_plot_has_its_data_in_a_table_under_a_disclosure(page, server):
    manifest = api(server, "/model")["manifest"]
    expected = {
        "plot-loss": len(manifest["loss_history"]),
        "plot-fit": len(manifest["holdout_sample"]["actual"]),
        "plot-residuals": len(manifest["holdout_sample"]["actual"]),
        "plot-coefficients": len(manifest["features"]),
        "plot-versions": len(api(server, "/models")["models"]),
    }
    for plot_id, rows in expected.items():
        summary = page.find_element("css selector", f"#{plot_id} details.data summary")
        summary.click()
        # The table is built on the toggle event, a task after the click.
        selector = f"#{plot_id} details.data tbody tr"
        wait_until(lambda sel=selector: page.find_elements("css selector", sel), WAIT,
                   f"{plot_id}'s table")
        table_rows = page.find_elements("css selector", selector)
        assert len(table_rows) == rows, plot_id
    first = page.find_elements("css selector", "#plot-fit details.data tbody tr")[0].text
    assert first.split()[0].replace(",", "") == f"{manifest['holdout_sample']['actual'][0]:.2f}" \
        .rstrip("0").rstrip(".")


# -- versions and rollback ------------------------------------------------------------------------


def _table_versions(driver: Any) -> list[tuple[str, str, str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#versions-table tbody tr')).map(r =>"
        " [r.dataset.version, r.querySelector('.badge').textContent,"
        "  r.querySelector('td.num').dataset.value])")


def _api_versions(server: GunicornServer) -> list[tuple[str, str, str]]:
    models = api(server, "/models")["models"]
    return [(m["id"], "active" if m["active"] else m["status"],
             repr(float(m["metrics"]["holdout"]["rmse"]))) for m in reversed(models)]


def _js_number(text: str) -> str:
    return repr(float(text))


def test_the_versions_table_matches_models(page, server):
    shown = [(v, s, _js_number(r)) for v, s, r in _table_versions(page)]
    assert shown == _api_versions(server)
    history = api(server, "/models/history")["history"]
    rows = page.find_elements("css selector", "#history-table tbody tr")
    assert len(rows) == len(history)
    assert history[-1]["version"] in rows[0].text and "now" in rows[0].text


def test_the_monitoring_section_shows_what_monitoring_reports(page, server, shots):
    wait_until(lambda: page.execute_script("return document.body.dataset.monitoring"), WAIT,
               "the monitoring report")
    (shots / "monitoring-1440px.png").write_bytes(
        page.find_element("id", "monitoring").screenshot_as_png)
    report = api(server, "/monitoring")  # the same report: it is cached for a minute
    facts = text_of(page, "monitoring-facts")
    assert report["model_version"] in facts and "600" in facts
    live = page.find_element("css selector", "#monitoring-quality tbody td.num")
    assert float(live.get_attribute("data-value")) == report["live"]["rmse"]
    shown = {row.get_attribute("data-feature"): row for row in page.find_elements(
        "css selector", "#drift-table tbody tr")}
    assert set(shown) == set(report["drift"])
    for name, d in report["drift"].items():
        cell = shown[name].find_element("css selector", "td[data-label='PSI']")
        assert float(cell.get_attribute("data-value")) == d["psi"]
        assert shown[name].find_element("css selector", ".badge").get_attribute(
            "class").split()[-1] == d["status"]
    assert report["drift"]["sqft"]["status"] == "act"  # the houses grew
    alerts = [li.text for li in page.find_elements("css selector", "#monitoring-alerts li")]
    assert alerts == report["alerts"] and any("drift on sqft" in a for a in alerts)
    assert "intervals covered" in text_of(page, "monitoring-coverage")
    before = report["generated_at"]
    page.find_element("id", "monitoring-refresh").click()
    wait_until(lambda: api(server, "/monitoring")["generated_at"] != before, WAIT,
               "a fresh join")


def test_the_form_shows_an_interval_and_the_explanation(page, server):
    page.find_element("id", "predict-button").click()
    wait_until(lambda: page.find_elements("id", "prediction-interval"), WAIT, "the interval")
    assert text_of(page, "prediction-interval").startswith("90% prediction interval: ")
    page.find_element("css selector", "#prediction-explanation summary").click()
    rows = page.find_elements("css selector", "#explanation-table tbody tr")
    assert len(rows) == len(api(server, "/model")["features"])
    assert text_of(page, "prediction-id")


def test_rollback_through_the_page_changes_what_model_reports(page, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    before = api(server, "/models")["active"]
    older = next(m["id"] for m in api(server, "/models")["models"] if not m["active"])
    button = page.find_element("css selector", f"button.activate[data-version='{older}']")

    # Cancelled with Escape: nothing changes.
    button.send_keys(Keys.ENTER)
    wait_until(lambda: page.execute_script("return document.getElementById('confirm').open"),
               WAIT, "the dialog")
    assert older in text_of(page, "confirm-text") and before in text_of(page, "confirm-text")
    ActionChains(page).send_keys(Keys.ESCAPE).perform()
    wait_until(lambda: text_of(page, "status") == "Activation cancelled.", WAIT, "cancelled")
    assert api(server, "/models")["active"] == before

    button.send_keys(Keys.ENTER)
    confirm_dialog(page)
    wait_until(lambda: text_of(page, "status").startswith(f"Version {older} is now active"),
               WAIT, "the page to report the rollback")
    # Every worker follows; /model (whichever worker answers) reports the version rolled back to.
    wait_until(lambda: all(api(server, "/model")["model_version"] == older for _ in range(4)),
               WAIT, f"/model to report {older}")
    assert page.execute_script("return sessionStorage.getItem('sgdserve-token')") == TOKEN
    assert TOKEN not in page.current_url
    assert page.get_cookies() == []
    assert _table_versions(page)[0][0] != older  # newest first; the active one is marked
    assert dict((v, s) for v, s, _ in _table_versions(page))[older] == "active"

    # A stale page cannot replace a newer promotion: activate `before` behind the page's back,
    # then ask the page to activate the version it still shows as not active.
    r = requests.post(f"{server.url}/models/{before}/activate",
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200
    stale = page.find_element("css selector", f"button.activate[data-version='{before}']")
    stale.send_keys(Keys.ENTER)
    confirm_dialog(page)
    wait_until(lambda: "became active since this page loaded" in text_of(page, "status"),
               WAIT, "the page to report the conflict")
    assert before in text_of(page, "status")
    assert api(server, "/models")["active"] == before
    console(page)  # the 409 is logged by the browser as a failed resource: expected here


# -- the prediction form --------------------------------------------------------------------------


def _predict_with_the_form(driver: Any, values: dict[str, str]) -> tuple[float, str]:
    for i, (name, value) in enumerate(values.items()):
        field = driver.find_element("id", f"feature-{i}")
        assert field.get_attribute("name") == name
        field.clear()
        field.send_keys(value)
    driver.find_element("id", "predict-button").click()
    wait_until(lambda: driver.find_elements("id", "prediction-value"), WAIT, "the answer")
    answer = driver.find_element("id", "prediction-value")
    version = driver.find_element("id", "prediction-version").text
    return float(answer.get_attribute("data-value")), version


def test_the_form_answers_what_predict_answers(page, server):
    model = api(server, "/model")
    assert [e.get_attribute("name") for e in page.find_elements(
        "css selector", "#predict-fields input")] == model["features"]
    hints = text_of(page, "predict-fields")
    for entry in model["schema"]:
        assert f"mean {entry['mean']:,.2f}".rstrip("0").rstrip(".") in hints or \
            entry["name"] in hints
    values = {"sqft": "1712.5", "bedrooms": "3", "bathrooms": "2.5", "age_years": "17"}
    shown, version = _predict_with_the_form(page, values)
    row = {k: (float(v) if "." in v else int(v)) for k, v in values.items()}
    r = requests.post(server.url + "/predict", json={"features": row}, timeout=10).json()
    assert shown == r["prediction"]  # the same float, bit for bit
    assert version == r["model_version"]

    # The prefilled values (the training means) predict as /predict does for them, too.
    open_page(page, server.url)
    page.find_element("id", "predict-button").click()
    wait_until(lambda: page.find_elements("id", "prediction-value"), WAIT, "the answer")
    prefilled = {f["name"]: float(page.find_element("id", f"feature-{i}").get_attribute("value"))
                 for i, f in enumerate(model["schema"])}
    r = requests.post(server.url + "/predict", json={"features": prefilled}, timeout=10).json()
    assert float(page.find_element("id", "prediction-value").get_attribute("data-value")) \
        == r["prediction"]


def test_the_form_shows_predicts_error_and_marks_the_field(page, server):
    # Every feature imputes an empty value: an empty field is sent as null, and the answer is
    # /predict's for null (the training mean).
    page.find_element("id", "feature-0").clear()
    values = {name: float(page.find_element("id", f"feature-{i}").get_attribute("value"))
              for i, name in enumerate(["sqft", "bedrooms", "bathrooms", "age_years"]) if i}
    page.find_element("id", "predict-button").click()
    r = requests.post(server.url + "/predict", json={"features": {"sqft": None, **values}},
                      timeout=10)
    def shown() -> str | None:
        found = page.find_elements("id", "prediction-value")
        return found[0].get_attribute("data-value") if found else None

    wait_until(lambda: shown() == repr(r.json()["prediction"]), WAIT, "the imputed prediction")
    page.find_element("id", "feature-0").clear()
    # A number the form takes, whose prediction overflows: /predict's 400, shown as it says.
    page.find_element("id", "feature-0").send_keys("1e307")
    page.find_element("id", "predict-button").click()
    wait_until(lambda: text_of(page, "prediction").startswith("Not predicted: "), WAIT, "the 400")
    r = requests.post(server.url + "/predict", json={"features": {
        "sqft": 1e307, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["message"] in text_of(page, "prediction")
    console(page)


# -- retraining ------------------------------------------------------------------------------------


def _retrain(driver: Any, path: Path, options: dict[str, str], force: bool) -> str:
    driver.find_element("id", "retrain-file").send_keys(str(path))
    for name, value in options.items():
        field = driver.find_element("id", f"opt-{name}")
        field.clear()
        field.send_keys(value)
    if force:
        driver.find_element("id", "opt-force").click()
    driver.find_element("id", "retrain-button").click()
    confirm_dialog(driver)
    wait_until(lambda: driver.execute_script(
        "const p = document.querySelector('#retrain-status [data-status]');"
        "return p && ['promoted', 'rejected', 'failed'].includes(p.dataset.status)"),
        120, "the retrain job to finish on the page")
    return text_of(driver, "retrain-status")


def test_a_retrain_upload_ends_rejected_then_promoted_on_the_page(page, server, tmp_path):
    before = {m["id"] for m in api(server, "/models")["models"]}
    active = api(server, "/models")["active"]
    # One epoch at a tiny step: far worse than the active model, so the gate rejects it.
    text = _retrain(page, SAMPLE, {"epochs": "1", "eta0": "0.0001"}, force=False)
    assert text.startswith("Rejected: version "), text
    assert "against the active model's" in text and "holdout RMSE" in text
    models = api(server, "/models")
    new = {m["id"] for m in models["models"]} - before
    assert len(new) == 1 and models["active"] == active
    (rejected,) = new
    assert rejected in text
    assert dict((v, s) for v, s, _ in _table_versions(page))[rejected] == "rejected"

    data = tmp_path / "more.csv"
    write_houses_csv(data, 1500, seed=11)
    open_page(page, server.url)
    text = _retrain(page, data, {}, force=True)
    assert text.startswith("Promoted: version "), text
    promoted = text.split()[2]
    wait_until(lambda: api(server, "/model")["model_version"] == promoted, WAIT,
               "/model to serve the promoted version")
    assert text_of(page, "status").startswith("Promoted")
    assert dict((v, s) for v, s, _ in _table_versions(page))[promoted] == "active"
    assert promoted in text_of(page, "card-body")
    console(page)


def test_a_retrain_without_a_file_or_with_a_wrong_token_says_so(page, server):
    page.find_element("id", "retrain-button").click()
    wait_until(lambda: "Choose a CSV file" in text_of(page, "retrain-status"), WAIT, "message")
    page.find_element("id", "retrain-file").send_keys(str(SAMPLE))
    page.find_element("id", "retrain-button").click()
    confirm_dialog(page, token="not-the-token")
    wait_until(lambda: "bearer token" in text_of(page, "retrain-status"), WAIT, "the 401")
    # A refused token is not kept.
    assert page.execute_script("return sessionStorage.getItem('sgdserve-token')") is None
    console(page)


# -- keyboard, accessibility, screenshots ---------------------------------------------------------

_FOCUSABLE = """
const sel = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]),'
  + ' summary, [tabindex="0"]';
return Array.from(document.querySelectorAll(sel))
  .filter(e => e.getClientRects().length && !e.closest('dialog:not([open])'))
  .map(e => { if (!e.dataset.kb) e.dataset.kb = 'k' + Math.random().toString(36).slice(2);
              return e.dataset.kb; });
"""


def test_keyboard_alone_reaches_every_control(page, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.execute_script(_FOCUSABLE)  # tag what is focusable now
    page.find_element("tag name", "body").click()
    page.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    seen: list[str] = []
    opened = 0
    for _ in range(400):
        ActionChains(page).send_keys(Keys.TAB).perform()
        info = page.execute_script(
            "const e = document.activeElement;"
            "if (e !== document.body && !e.dataset.kb) e.dataset.kb = 'n' + Math.random();"
            "return [e.dataset.kb || '', e.tagName,"
            " e.tagName === 'SUMMARY' ? e.parentElement.open : null]")
        kb, tag, details_open = info
        if tag == "SUMMARY" and details_open is False:
            ActionChains(page).send_keys(Keys.ENTER).perform()  # open it from the keyboard
            opened += 1
            # A data table is built on the toggle event (a task after the key): wait for it.
            wait_until(lambda: page.execute_script(
                "const d = document.activeElement.parentElement;"
                "const slot = d.querySelector('.table-slot');"
                "return d.open && (!slot || slot.firstChild !== null)"), WAIT, "the disclosure")
            page.execute_script(_FOCUSABLE)  # its content is focusable now
        if kb and seen and kb == seen[0]:
            break
        if tag == "BODY":
            continue
        seen.append(kb)
    expected = page.execute_script(_FOCUSABLE)
    missing = set(expected) - set(seen)
    described = page.execute_script(
        "return arguments[0].map(k => document.querySelector(`[data-kb='${k}']`))"
        ".map(e => e.tagName + '#' + e.id + ' ' + (e.textContent || '').slice(0, 30))",
        sorted(missing))
    assert not missing, described
    assert opened >= 7  # six data tables and "More options"
    # The first Tab reaches the skip link; predicting works with Enter in a field.
    page.find_element("id", "feature-0").send_keys(Keys.ENTER)
    wait_until(lambda: page.find_elements("id", "prediction-value"), WAIT, "the answer")


def _axe(driver: Any) -> list[dict[str, Any]]:
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256
    driver.execute_script(source.decode())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations),"
        " e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result]


@pytest.mark.parametrize("width", [1440, 375])
def test_axe_finds_nothing_serious_or_critical(browser, server, width):
    open_page(browser, server.url, width)
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    found = _axe(browser)
    serious = [v for v in found if v["impact"] in ("serious", "critical")]
    assert serious == [], json.dumps(serious, indent=1)
    # The dialog too, open.
    browser.execute_script("document.getElementById('confirm').showModal()")
    serious = [v for v in _axe(browser) if v["impact"] in ("serious", "critical")]
    assert serious == [], json.dumps(serious, indent=1)
    console(browser)


@pytest.mark.parametrize("width", [375, 1440])
def test_screenshots_at_both_widths(browser, server, shots, width):
    open_page(browser, server.url, width)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path = shots / f"page-{width}px.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 50_000
    # Readable at this width: nothing wider than the viewport but the scrolling regions.
    overflow = browser.execute_script(
        "return Array.from(document.querySelectorAll('main > section, header, footer'))"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.id)")
    assert overflow == []
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")


# -- the schema contract of the tabular-data work, on a fixture /model ---------------------------


@pytest.fixture(scope="module")
def fixture_server(browser_paths, tmp_path_factory) -> Iterator[tuple[GunicornServer, Path]]:
    bodies = tmp_path_factory.mktemp("page-fixture-bodies")
    env = {"SGDSERVE_MODEL_DIR": str(tmp_path_factory.mktemp("page-fixture-store")),
           "PAGE_FIXTURE_DIR": str(bodies)}
    srv = GunicornServer(tmp_path_factory.mktemp("page-fixture-gunicorn"), workers=1, env=env,
                         app="page_fixture_app:create()", pythonpath=(REPO / "tests",))
    with srv:
        yield srv, bodies


def test_the_form_and_card_follow_a_categorical_schema(browser, fixture_server):
    """The page script on a fixture /model with boolean and categorical features (no model
    in this branch has them yet): what it renders, and the body it sends to /predict."""
    from page_fixture_app import MODEL, PREDICTION
    from selenium.webdriver.support.ui import Select

    server, bodies = fixture_server
    console(browser)
    open_page(browser, server.url)
    assert errors(console(browser)) == []
    assert browser.execute_script("return window.__violations") == []

    sqft_hint = text_of(browser, "feature-0-hint")
    assert "training range 334 to 5,642" in sqft_hint
    assert browser.find_element("id", "feature-0").get_attribute("required") == "true"
    assert browser.find_element("id", "feature-1").get_attribute("required") is None
    assert "may be left empty" in text_of(browser, "feature-1-hint")
    air = Select(browser.find_element("id", "feature-2"))
    assert [o.text for o in air.options] == ["true (Y)", "false (N)"]
    hood = Select(browser.find_element("id", "feature-3"))
    assert [o.text for o in hood.options] == ["NAmes (443 rows)", "CollgCr (267 rows)",
                                              "StoneBr (51 rows)"]
    assert hood.first_selected_option.text.startswith("NAmes")  # the most frequent level
    alley = Select(browser.find_element("id", "feature-4"))
    assert [o.text for o in alley.options] == ["(empty) (2,732 rows)", "Grvl (120 rows)",
                                               "Pave (78 rows)"]

    browser.find_element("id", "feature-0").clear()
    browser.find_element("id", "feature-0").send_keys("2000")
    browser.find_element("id", "feature-1").clear()
    air.select_by_index(1)
    hood.select_by_visible_text("StoneBr (51 rows)")
    browser.find_element("id", "predict-button").click()
    wait_until(lambda: browser.find_elements("id", "prediction-value"), WAIT, "the answer")
    assert float(browser.find_element("id", "prediction-value").get_attribute("data-value")) \
        == PREDICTION
    sent = json.loads((bodies / "predict-0.json").read_bytes())
    assert sent == {"features": {"sqft": 2000, "lot_area": None, "central_air": "N",
                                 "neighborhood": "StoneBr", "alley": None},
                    "explain": True}  # no calibration in the fixture's manifest: no interval

    alley.select_by_visible_text("Pave (78 rows)")
    browser.find_element("id", "feature-1").send_keys("8450")
    browser.find_element("id", "predict-button").click()
    def second_body() -> Any:
        try:
            return json.loads((bodies / "predict-1.json").read_bytes())
        except (FileNotFoundError, ValueError):  # not there, or not all written yet
            return None

    sent = wait_until(second_body, WAIT, "the second body")
    assert sent["features"]["alley"] == "Pave" and sent["features"]["lot_area"] == 8450

    equation = text_of(browser, "equation")
    assert "w_neighborhood[neighborhood]" in equation and "[central_air is true]" in equation
    features = text_of(browser, "features-table")
    assert "categorical" in features and "boolean" in features and "yes (imputed)" in features
    # One bar per numeric feature, the boolean, and each level (weights over the target scale).
    levels = sum(len(f.get("levels", [])) for f in MODEL["schema"])
    assert _plot(browser, "plot-coefficients")["bars"] == 2 + 1 + levels
    browser.find_element("css selector", "#card details.more summary").click()
    assert "StoneBr" in text_of(browser, "card-body")
    assert errors(console(browser)) == []


# -- a model with text categories, empty cells and yes/no (a real one, trained here) ------------


@pytest.fixture(scope="module")
def mixed_server(browser_paths, tmp_path_factory) -> Iterator[GunicornServer]:
    from test_tabular import house_frame

    tmp = tmp_path_factory.mktemp("page-mixed")
    house_frame(2000, seed=5).to_csv(tmp / "houses.csv", index=False)
    train(LocalStore(tmp / "models"), tmp / "houses.csv", target="price")
    env = {"SGDSERVE_MODEL_DIR": str(tmp / "models"), "SGDSERVE_RELOAD_INTERVAL": "1"}
    with GunicornServer(tmp / "gunicorn", workers=1, env=env) as srv:
        yield srv


def test_the_form_of_a_categorical_model_answers_what_predict_answers(browser, mixed_server):
    from selenium.webdriver.support.ui import Select

    open_page(browser, mixed_server.url)
    model = api(mixed_server, "/model")
    schema = {f["name"]: (i, f) for i, f in enumerate(model["schema"])}
    wait_until(lambda: browser.find_elements("id", "predict-button"), WAIT, "the form")
    hood_i, hood = schema["hood"]
    select = Select(browser.find_element("id", f"feature-{hood_i}"))
    offered = [o.get_attribute("value") for o in select.options]
    for level in hood["levels"]:
        assert level["level"] in offered  # every kept level is offered
    level = hood["levels"][3]["level"]
    select.select_by_value(level)
    alley_i, _ = schema["alley"]
    alley = Select(browser.find_element("id", f"feature-{alley_i}"))
    alley.select_by_index(next(i for i, o in enumerate(alley.options)
                               if o.text.startswith("(empty)")))
    empty = alley.first_selected_option.get_attribute("value")
    air_i, _ = schema["air"]
    Select(browser.find_element("id", f"feature-{air_i}")).select_by_index(1)
    lot_i, _ = schema["lot"]
    browser.find_element("id", f"feature-{lot_i}").clear()  # empty: imputed
    browser.find_element("id", "predict-button").click()
    wait_until(lambda: browser.find_elements("id", "prediction-value"), WAIT, "the answer")
    shown = float(browser.find_element("id", "prediction-value").get_attribute("data-value"))

    row = {}
    for name, (i, f) in schema.items():
        control = browser.find_element("id", f"feature-{i}")
        value = control.get_attribute("value")
        if f["kind"] == "numeric":
            row[name] = float(value) if value else None
        elif f["kind"] == "boolean":
            row[name] = None if value == empty else value
        else:
            row[name] = None if value == empty else value
    assert row["hood"] == level and row["alley"] is None and row["lot"] is None
    r = requests.post(mixed_server.url + "/predict", json={"features": row}, timeout=10).json()
    assert shown == r["prediction"]  # the same float, bit for bit
    assert not errors(console(browser))


def test_a_log_model_shows_its_equation_on_the_log_scale(browser, tmp_path):
    from test_tabular import skewed_frame

    skewed_frame(1500, seed=2).to_csv(tmp_path / "houses.csv", index=False)
    train(LocalStore(tmp_path / "models"), tmp_path / "houses.csv", target="price",
          encoding={"target_transform": "log"})
    env = {"SGDSERVE_MODEL_DIR": str(tmp_path / "models")}
    with GunicornServer(tmp_path / "gunicorn", workers=1, env=env) as srv:
        open_page(browser, srv.url)
        wait_until(lambda: browser.find_elements("id", "equation"), WAIT, "the card")
        low, high = api(srv, "/model")["prediction_range"]
        assert text_of(browser, "equation").startswith("log(price) = ")
        card = text_of(browser, "card-body")
        assert "a prediction is exp of the sum" in card and f"{int(high):,}" in card, card
        assert "log(price) per unit" in text_of(browser, "features-table")
        assert not errors(console(browser))

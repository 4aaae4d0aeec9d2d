"""The page's plots drawn as its own SVG against the same six charts in Chart.js, side by side.

A store gets one version trained on 10,000 rows (so its holdout sample holds the full 2,000
pairs) and a second one; gunicorn serves it. In headless Chromium, the page is loaded and the
time its script takes to draw every plot (layout included) is read from ``data-plots-ms``; then
a local page with Chart.js (the file you give, e.g. from ``npm pack chart.js@4.6.1``) draws the
same data as the same six charts, animation off, timed the same way. Runs alternate, 9 of each;
medians are reported with the bytes each needs.

    python bench/page_draw.py --chartjs /path/to/package/dist/chart.umd.js

Needs Debian's chromium and chromium-driver and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CHARTS = """
const data = JSON.parse(document.getElementById('data').textContent);
const t0 = performance.now();
const m = data.model.manifest, s = m.holdout_sample;
const res = s.actual.map((a, i) => a - s.predicted[i]);
const opts = {animation: false, responsive: false};
const mk = (id, config) => {
  const c = document.createElement('canvas'); c.width = 640; c.height = 360; c.id = id;
  document.body.append(c); return new Chart(c, Object.assign({options: opts}, config));
};
mk('loss', {type: 'line', data: {labels: m.loss_history.map((_, i) => i + 1),
  datasets: [{label: 'loss', data: m.loss_history}]}});
const lo = Math.min(...s.actual, ...s.predicted), hi = Math.max(...s.actual, ...s.predicted);
mk('fit', {type: 'scatter', data: {datasets: [
  {label: 'holdout', data: s.actual.map((a, i) => ({x: a, y: s.predicted[i]})), pointRadius: 2},
  {type: 'line', label: 'y = x', data: [{x: lo, y: lo}, {x: hi, y: hi}], pointRadius: 0}]}});
mk('residuals', {type: 'scatter', data: {datasets: [
  {label: 'residual', data: s.predicted.map((p, i) => ({x: p, y: res[i]})), pointRadius: 2}]}});
const bins = 30, rlo = Math.min(...res), w = (Math.max(...res) - rlo) / bins;
const counts = new Array(bins).fill(0);
res.forEach(r => counts[Math.min(bins - 1, Math.floor((r - rlo) / w))]++);
mk('hist', {type: 'bar', data: {labels: counts.map((_, i) => (rlo + i * w).toFixed(0)),
  datasets: [{label: 'rows', data: counts}]}});
mk('coef', {type: 'bar', options: Object.assign({indexAxis: 'y'}, opts), data: {
  labels: data.model.schema.map(f => f.name),
  datasets: [{label: 'standardised', data: data.model.schema.map(f => f.standardized)}]}});
const points = data.models.models.map(
  v => ({x: Date.parse(v.created_at), y: v.metrics.holdout.rmse}));
mk('versions', {type: 'scatter', data: {datasets: [{label: 'holdout RMSE', data: points}]}});
void document.body.offsetHeight;
document.body.dataset.plotsMs = (performance.now() - t0).toFixed(1);
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chartjs", type=Path, required=True, help="chart.umd.js (4.x)")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    import requests
    from test_page_browser import _start_browser

    from service.data import write_houses_csv
    from service.http.ui import ASSET_TYPES, STATIC_DIR
    from service.store import LocalStore
    from service.training import train

    from helpers import GunicornServer, wait_until

    work = Path(tempfile.mkdtemp(prefix="page-draw-"))
    store = LocalStore(work / "models", "house-price")
    write_houses_csv(work / "a.csv", 10_000, seed=1)
    write_houses_csv(work / "b.csv", 10_000, seed=2)
    train(store, work / "a.csv", target="price")
    train(store, work / "b.csv", target="price", force=True)

    env = {"SGDSERVE_MODEL_DIR": str(work / "models")}
    with GunicornServer(work / "gunicorn", workers=1, env=env) as server:
        data = {"model": requests.get(server.url + "/model", timeout=10).json(),
                "models": requests.get(server.url + "/models", timeout=10).json()}
        pairs = len(data["model"]["manifest"]["holdout_sample"]["actual"])
        chart_page = work / "chartjs.html"
        chart_page.write_text(
            "<!doctype html><meta charset=utf-8><body>"
            f"<script id=data type=application/json>{json.dumps(data)}</script>"
            f"<script src='{args.chartjs.resolve().as_uri()}'></script>"
            f"<script>{CHARTS}</script>")
        driver = _start_browser(work / "profile")
        svg, canvas = [], []
        weights = {}
        try:
            for _ in range(args.runs):
                driver.get(server.url + "/")
                wait_until(lambda: driver.execute_script(
                    "return document.body.dataset.ready") == "true", 30, "the page")
                svg.append(float(driver.execute_script("return document.body.dataset.plotsMs")))
                weights["page"] = driver.execute_script(
                    "return performance.getEntriesByType('resource').map(e => e.name)"
                    ".concat([location.href]).length")
                driver.get(chart_page.as_uri())
                wait_until(lambda: driver.execute_script(
                    "return document.body.dataset.plotsMs"), 30, "Chart.js")
                canvas.append(float(driver.execute_script(
                    "return document.body.dataset.plotsMs")))
        finally:
            driver.quit()
        html = requests.get(server.url + "/", timeout=10).content
        model_json = requests.get(server.url + "/model", timeout=10).content
        models_json = requests.get(server.url + "/models", timeout=10).content
        history_json = requests.get(server.url + "/models/history", timeout=10).content
    assets = {name: (STATIC_DIR / name).stat().st_size for name in ASSET_TYPES}
    own = len(html) + sum(assets.values())
    print(f"holdout pairs drawn: {pairs} (x2 scatter plots)")
    print(f"page requests: {weights['page']} (the page, its assets, /model, /models, "
          "/models/history)")
    print(f"bytes: page {len(html):,} + assets {assets} = {own:,}; data: /model "
          f"{len(model_json):,}, /models {len(models_json):,}, /models/history "
          f"{len(history_json):,}")
    print(f"Chart.js adds {args.chartjs.stat().st_size:,} bytes (one more request)")
    print(f"draw, median of {args.runs}: own SVG {statistics.median(svg):.1f} ms "
          f"(all {sorted(svg)}); Chart.js {statistics.median(canvas):.1f} ms "
          f"(all {sorted(canvas)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

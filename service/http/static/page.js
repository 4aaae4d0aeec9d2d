/* sgdserve's page: reads /model, /models and /models/history, draws the card, the plots (SVG,
   no library), the versions, a prediction form built from the model's schema, and retraining;
   then /monitoring: live quality against the holdout, interval coverage and drift per feature.
   The API token lives in sessionStorage only; it is sent in an Authorization header, never in a
   URL or a cookie. No inline script or style anywhere: the page runs under a strict CSP. */
'use strict';

(function () {
  const TOKEN_KEY = 'sgdserve-token';
  const SVGNS = 'http://www.w3.org/2000/svg';
  const POLL_MS = 500;
  const state = { model: null, models: null, history: null, noModel: null };

  // -- small helpers ---------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function s(tag, attrs, parent) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === 'text') node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    if (parent) parent.append(node);
    return node;
  }

  const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
  const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });

  // A number for people: grouped, about four significant digits, exponents only when needed.
  function fmt(x) {
    if (typeof x !== 'number' || Number.isNaN(x)) return '–';
    const a = Math.abs(x);
    let text;
    if (a === 0) text = '0';
    else if (a >= 1e15 || a < 1e-3) text = x.toExponential(3);
    else if (a >= 1000) text = grouped.format(x);
    else text = grouped.format(Number(x.toPrecision(4)));
    return text.replace(/^-/, '−');
  }

  const signed = (x) => (x > 0 ? '+' : x < 0 ? '−' : '±') + fmt(Math.abs(x));

  function when(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }

  function say(text, kind) {
    const node = $('status');
    node.textContent = text;
    node.className = 'status' + (kind ? ' ' + kind : '');
  }

  // -- the JSON endpoints ----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, error) {
      super((error && error.message) || `HTTP ${status}`);
      this.status = status;
      this.code = error && error.code;
      this.detail = error || {};
    }
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ headers: { Accept: 'application/json' } }, options));
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body && body.error);
    return body;
  }

  function writeHeaders(token, extra) {
    return Object.assign({ Authorization: 'Bearer ' + token, Accept: 'application/json' }, extra || {});
  }

  async function load() {
    const [model, models, history] = await Promise.all([
      api('/model').catch((e) => e),
      api('/models'),
      api('/models/history'),
    ]);
    state.models = models;
    state.history = history.history;
    if (model instanceof ApiError && model.code === 'no_model') {
      state.model = null;
      state.noModel = model.message;
    } else if (model instanceof Error) {
      throw model;
    } else {
      state.model = model;
      state.noModel = null;
    }
    render();
  }

  // Workers follow a promotion within a second; wait until the one answering us does.
  async function waitForModel(version, seconds) {
    const deadline = Date.now() + (seconds || 10) * 1000;
    while (Date.now() < deadline) {
      try {
        const model = await api('/model');
        if (model.model_version === version) return true;
      } catch (_) { /* try again */ }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return false;
  }

  function render() {
    renderCard();
    renderPlots();
    renderVersions();
    renderForm();
    if (state.model) {
      say(`Serving version ${state.model.model_version}.`);
    } else {
      say(state.noModel || 'No model yet.', 'warn');
    }
  }

  // -- the model card --------------------------------------------------------------------------

  function summaryOf(id) {
    return (state.models.models || []).find((m) => m.id === id) || null;
  }

  function renderCard() {
    const body = $('card-body');
    body.replaceChildren();
    const model = state.model;
    if (!model) {
      body.append(h('p', { text: (state.noModel || 'No model yet.') + ' Use the Retrain form below to train one.' }));
      return;
    }
    const manifest = model.manifest || {};
    const data = manifest.data || {};
    const parent = manifest.parent || null;
    const items = [
      ['Name', model.name],
      ['Active version', h('code', { text: model.model_version })],
      ['Target', model.target],
      ['Trained', when(manifest.created_at)],
      ['Data', data.file ? `${data.file}, ${fmt(data.rows)} rows, sha256 ${String(data.sha256 || '').slice(0, 12)}…` : '–'],
      ['Source', data.source || '–'],
      ['Parent version', parent ? h('code', { text: parent }) : 'none (the first model)'],
      ['Gate', (manifest.gate && manifest.gate.reason) || '–'],
      ['Training', manifest.epochs !== undefined ? `${manifest.epochs} epochs, ${fmt(manifest.training_seconds)} s` : '–'],
    ];
    const dl = h('dl', { class: 'facts' });
    for (const [term, value] of items) dl.append(h('dt', { text: term }), h('dd', {}, value));
    const left = h('div', { class: 'card-col' }, dl, metricsTable(model, manifest, parent));
    const right = h('div', { class: 'card-col' }, h('h3', { text: 'The model in original units' }),
      equation(model));
    const hyper = manifest.hyperparameters;
    if (hyper) {
      const list = h('dl', { class: 'facts small' });
      for (const [k, v] of Object.entries(hyper)) list.append(h('dt', { text: k }), h('dd', { text: String(v) }));
      right.append(h('details', { class: 'more' }, h('summary', { text: 'Hyper-parameters' }), list));
    }
    // The features and their levels take the card's whole width: a model of the Ames houses
    // has 80 of them, which in one column left the other empty for pages.
    const wide = h('div', { class: 'card-wide' }, featureTable(model));
    for (const f of schemaOf(model)) {
      if (f.kind === 'categorical') wide.append(levelTable(f, targetUnit(model)));
    }
    body.append(h('div', { class: 'card-grid' }, left, right), wide);
  }

  function metricsTable(model, manifest, parent) {
    const metrics = model.metrics || manifest.metrics || {};
    const train = metrics.train || {};
    const holdout = metrics.holdout || {};
    // The fair comparison is the parent scored on this version's holdout rows (the gate's);
    // otherwise the parent's own numbers, on its own holdout.
    let reference = null;
    let referenceNote = '';
    const gate = manifest.gate || {};
    if (parent && metrics.active_holdout && gate.compared_with === parent) {
      reference = { holdout: metrics.active_holdout, train: (summaryOf(parent) || {}).metrics?.train || {} };
      referenceNote = 'Change against the parent: holdout scored on the same rows (the gate\'s comparison); train on the parent\'s own data.';
    } else if (parent && summaryOf(parent) && summaryOf(parent).metrics) {
      reference = summaryOf(parent).metrics;
      referenceNote = 'Change against the parent: its own train and holdout rows.';
    }
    const table = h('table', { class: 'metrics', id: 'metrics-table' },
      h('caption', { text: 'Fit (target units; R² unitless)' }));
    const head = h('tr', {}, h('th', { scope: 'col', text: 'Metric' }), h('th', { scope: 'col', text: 'Train' }),
      h('th', { scope: 'col', text: 'Holdout' }));
    if (reference) head.append(h('th', { scope: 'col', text: 'Train vs parent' }), h('th', { scope: 'col', text: 'Holdout vs parent' }));
    table.append(h('thead', {}, head));
    const tbody = h('tbody');
    for (const [key, label] of [['rmse', 'RMSE'], ['mae', 'MAE'], ['r2', 'R²']]) {
      const show = key === 'r2' ? fixed4 : fmt;
      const row = h('tr', {}, h('th', { scope: 'row', text: label }), h('td', { text: show(train[key]) }),
        h('td', { text: show(holdout[key]) }));
      if (reference) {
        row.append(h('td', { text: change(train[key], (reference.train || {})[key], key) }),
          h('td', { text: change(holdout[key], (reference.holdout || {})[key], key) }));
      }
      tbody.append(row);
    }
    table.append(tbody);
    const wrap = h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Fit metrics', tabindex: '0' }, table);
    const out = h('div', {}, wrap);
    out.append(h('p', { class: 'hint', text: reference ? referenceNote : 'No parent version to compare with.' }));
    if (holdout.rows) out.append(h('p', { class: 'hint', text: `${fmt(train.rows)} training rows, ${fmt(holdout.rows)} holdout rows.` }));
    return out;
  }

  // R² in four decimals: differences between versions are often in the third.
  function fixed4(x) {
    return typeof x === 'number' ? x.toFixed(4).replace(/^-/, '−') : '–';
  }

  function change(now, before, key) {
    if (typeof now !== 'number' || typeof before !== 'number') return '–';
    const delta = now - before;
    if (key === 'r2') {
      const shown = fixed4(Math.abs(delta));
      if (shown === '0.0000') return 'same';
      return `${delta > 0 ? '+' : '−'}${shown}, ${delta > 0 ? 'better' : 'worse'}`;
    }
    const pct = before !== 0 ? ` (${signed((100 * delta) / Math.abs(before))}%)` : '';
    const word = delta === 0 ? 'same' : delta < 0 ? 'better' : 'worse';
    return `${signed(delta)}${pct}, ${word}`;
  }

  function schemaOf(model) {
    if (Array.isArray(model.schema) && model.schema.length) return model.schema;
    // An older server: numeric features only, from the coefficients.
    return model.features.map((name) => ({ name, kind: 'numeric', coefficient: model.coefficients[name] }));
  }

  function equation(model) {
    const parts = [];
    for (const f of schemaOf(model)) {
      if (f.kind === 'categorical') {
        parts.push(`w_${f.name}[${f.name}]`);
      } else if (f.kind === 'boolean') {
        parts.push(`${fmt(f.coefficient)} × [${f.name} is true]`);
      } else {
        parts.push(`${fmt(f.coefficient)} × ${f.name}`);
      }
    }
    const logged = model.target_transform === 'log';
    let text = logged ? `log(${model.target}) = ` : `${model.target} = `;
    parts.forEach((part, i) => {
      const negative = part.startsWith('−');
      text += i === 0 ? part : (negative ? ' − ' + part.slice(1) : ' + ' + part);
    });
    const b = model.intercept;
    text += (parts.length ? (b < 0 ? ' − ' : ' + ') + fmt(Math.abs(b)) : fmt(b));
    const out = h('div', { class: 'equation' }, h('p', {}, h('code', { id: 'equation', text })));
    if (logged) {
      const range = model.prediction_range || [];
      out.append(h('p', { class: 'hint', text: `Fitted on log(${model.target}): each slope is in log(${model.target}) per unit of its feature (0.01 is about +1% of ${model.target}); a prediction is exp of the sum` +
        (range.length === 2 ? `, kept within the training range ${fmt(range[0])} to ${fmt(range[1])}.` : '.') }));
    } else {
      out.append(h('p', { class: 'hint', text: `Each slope is in ${model.target} per unit of its feature (y = m·x + b per feature).` }));
    }
    return out;
  }

  function levelTable(f, target) {
    const table = h('table', { class: 'levels' }, h('caption', { text: `w_${f.name}: ${target} added per level of ${f.name}` }));
    table.append(h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Level' }), h('th', { scope: 'col', text: 'Weight' }),
      h('th', { scope: 'col', text: 'Training rows' }))));
    const tbody = h('tbody');
    for (const level of f.levels || []) {
      tbody.append(h('tr', {}, h('th', { scope: 'row', text: level.level === '' ? '(empty)' : level.level }),
        h('td', { text: signed(level.weight) }), h('td', { text: fmt(level.count) })));
    }
    if (f.other) {
      tbody.append(h('tr', {}, h('th', { scope: 'row', text: `(other: ${fmt(f.other.pooled)} rarer or unseen levels)` }),
        h('td', { text: signed(f.other.weight) }), h('td', { text: fmt(f.other.count) })));
    }
    table.append(tbody);
    return h('details', { class: 'more' }, h('summary', { text: `Levels of ${f.name}` }),
      h('div', { class: 'table-wrap', role: 'region', 'aria-label': `Levels of ${f.name}`, tabindex: '0' }, table));
  }

  function targetUnit(model) {
    return model.target_transform === 'log' ? `log(${model.target})` : model.target;
  }

  function featureTable(model) {
    const table = h('table', { id: 'features-table', class: 'cards' }, h('caption', { text: 'Features, in input order' }));
    table.append(h('thead', {}, h('tr', {}, ...['Feature', 'Kind', 'Slope or weights', 'In training', 'Empty allowed']
      .map((t) => h('th', { scope: 'col', text: t })))));
    const tbody = h('tbody');
    for (const f of schemaOf(model)) {
      let slope;
      let seen;
      if (f.kind === 'categorical') {
        const n = (f.levels || []).length;
        slope = `one weight per level (${n} levels${f.other ? ' + other' : ''})`;
        seen = `${n} levels`;
      } else if (f.kind === 'boolean') {
        slope = `${signed(f.coefficient)} ${targetUnit(model)} when true`;
        seen = `true: ${(f.true || []).join(', ') || 'true'}; false: ${(f.false || []).join(', ') || 'false'}`;
      } else {
        slope = `${fmt(f.coefficient)} ${targetUnit(model)} per unit`;
        seen = rangeText(f);
      }
      tbody.append(h('tr', {}, h('th', { scope: 'row', text: f.name }), h('td', { 'data-label': 'Kind', text: f.kind }),
        h('td', { 'data-label': 'Slope or weights', text: slope }), h('td', { 'data-label': 'In training', text: seen }),
        h('td', { 'data-label': 'Empty allowed', text: f.imputes ? 'yes (imputed)' : 'no' })));
    }
    table.append(tbody);
    return h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Features', tabindex: '0' }, table);
  }

  function rangeText(f) {
    const parts = [];
    if (typeof f.mean === 'number') parts.push(`mean ${fmt(f.mean)}`);
    if (typeof f.min === 'number' && typeof f.max === 'number') parts.push(`range ${fmt(f.min)} to ${fmt(f.max)}`);
    return parts.join('; ') || '–';
  }

  // -- plots: SVG drawn here, each with a text alternative and a data table ---------------------

  function ticks(lo, hi, count, integer) {
    if (!(hi > lo)) return [lo];
    // The round step (1, 2 or 5 times a power of ten) nearest to an even split, as d3 does.
    const raw = (hi - lo) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const err = raw / mag;
    let step = mag * (err >= Math.sqrt(50) ? 10 : err >= Math.sqrt(10) ? 5 : err >= Math.sqrt(2) ? 2 : 1);
    if (integer) step = Math.max(1, Math.round(step));
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  function padded(lo, hi) {
    if (!(hi > lo)) {
      const d = Math.abs(lo) * 0.1 || 1;
      return [lo - d, hi + d];
    }
    const pad = (hi - lo) * 0.05;
    return [lo - pad, hi + pad];
  }

  function extent(values) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  }

  // A plot area in a container: axes with ticks and labels; returns scales and the plot group.
  function frame(container, opts) {
    const width = Math.max(260, Math.floor(container.clientWidth || 480));
    const height = Math.round(Math.min(360, Math.max(220, width * 0.62)));
    const m = { top: opts.top || 14, right: 16, bottom: 46, left: opts.left || 62 };
    const svg = s('svg', {
      width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
      'aria-labelledby': opts.titleId, 'aria-describedby': opts.altId, class: 'chart',
    });
    const [x0, x1] = opts.x;
    const [y0, y1] = opts.y;
    const pw = width - m.left - m.right;
    const ph = height - m.top - m.bottom;
    const x = (v) => m.left + ((v - x0) / (x1 - x0)) * pw;
    const y = (v) => m.top + ph - ((v - y0) / (y1 - y0)) * ph;
    const axes = s('g', { class: 'axes' }, svg);
    if (!opts.noXTicks) {
      for (const t of ticks(x0, x1, Math.max(3, Math.floor(pw / 100)), opts.integerX)) {
        s('line', { class: 'grid', x1: x(t), x2: x(t), y1: m.top, y2: m.top + ph }, axes);
        s('text', { class: 'tick', x: x(t), y: m.top + ph + 16, 'text-anchor': 'middle', text: (opts.xFormat || tickText)(t) }, axes);
      }
    }
    if (!opts.noYTicks) {
      for (const t of ticks(y0, y1, Math.max(3, Math.floor(ph / 50)))) {
        s('line', { class: 'grid', x1: m.left, x2: m.left + pw, y1: y(t), y2: y(t) }, axes);
        s('text', { class: 'tick', x: m.left - 6, y: y(t) + 4, 'text-anchor': 'end', text: tickText(t) }, axes);
      }
    }
    s('rect', { class: 'border', x: m.left, y: m.top, width: pw, height: ph }, axes);
    s('text', { class: 'label', x: m.left + pw / 2, y: height - 8, 'text-anchor': 'middle', text: opts.xLabel }, axes);
    s('text', {
      class: 'label', x: -(m.top + ph / 2), y: 14, transform: 'rotate(-90)', 'text-anchor': 'middle', text: opts.yLabel,
    }, axes);
    const clip = `clip-${opts.titleId}`;
    s('rect', { x: m.left, y: m.top, width: pw, height: ph }, s('clipPath', { id: clip }, s('defs', {}, svg)));
    const plot = s('g', { class: 'marks', 'clip-path': `url(#${clip})` }, svg);
    container.replaceChildren(svg);
    return { svg, plot, x, y, m, pw, ph, width, height };
  }

  function tickText(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e15)) return v.toExponential(1);
    return (a >= 10000 ? compact.format(v) : String(Number(v.toPrecision(4)))).replace(/^-/, '−');
  }

  // The data table under a figure's disclosure, built when it is first opened.
  function dataTable(figure, caption, columns, rows) {
    const details = figure.querySelector('details.data');
    const slot = details.querySelector('.table-slot');
    slot.replaceChildren();
    const build = () => {
      if (slot.firstChild) return;
      const table = h('table', {}, h('caption', { text: caption }));
      table.append(h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: c })))));
      const tbody = h('tbody');
      for (const row of rows) tbody.append(h('tr', {}, row.map((v) => h('td', { text: typeof v === 'number' ? fmt(v) : v }))));
      table.append(tbody);
      slot.append(h('div', { class: 'table-wrap', role: 'region', 'aria-label': caption, tabindex: '0' }, table));
    };
    details.ontoggle = () => { if (details.open) build(); };
    if (details.open) build();
  }

  function emptyPlot(id, text) {
    const figure = $(id);
    figure.querySelector('.canvas').replaceChildren(h('p', { class: 'empty', text }));
    $(id + '-alt').textContent = text;
    dataTable(figure, text, ['–'], []);
  }

  function renderPlots() {
    const started = performance.now();
    drawAll();
    // Read by bench/page_draw.py: the time to draw every plot, layout included.
    document.body.dataset.plotsMs = (performance.now() - started + layoutMs()).toFixed(1);
  }

  function layoutMs() {
    const t = performance.now();
    void document.body.offsetHeight; // forces style and layout of what was just drawn
    return performance.now() - t;
  }

  function drawAll() {
    const model = state.model;
    const manifest = (model && model.manifest) || {};
    drawLoss(manifest.loss_history || []);
    const sample = manifest.holdout_sample || null;
    if (sample && sample.actual && sample.actual.length) {
      drawFit(sample, model.target);
      drawResiduals(sample, model.target);
      drawHistogram(sample, model.target);
    } else {
      for (const id of ['plot-fit', 'plot-residuals', 'plot-histogram']) {
        emptyPlot(id, model ? 'This version has no holdout sample (trained before samples were kept).' : 'No model yet.');
      }
    }
    if (model) drawCoefficients(model);
    else emptyPlot('plot-coefficients', 'No model yet.');
    drawVersions(state.models.models || []);
  }

  function drawLoss(loss) {
    const id = 'plot-loss';
    if (!loss.length) return emptyPlot(id, 'No loss history for this version.');
    const figure = $(id);
    const f = frame(figure.querySelector('.canvas'), {
      x: [0.5, loss.length + 0.5], y: padded(0, extent(loss)[1]).map((v, i) => (i === 0 ? Math.min(0, v) : v)),
      xLabel: 'epoch', yLabel: 'loss (standardised units)', titleId: id + '-title', altId: id + '-alt',
      integerX: true,
    });
    const path = loss.map((v, i) => `${i ? 'L' : 'M'}${f.x(i + 1).toFixed(1)},${f.y(v).toFixed(1)}`).join('');
    s('path', { class: 'series', d: path }, f.plot);
    for (let i = 0; i < loss.length; i += 1) s('circle', { class: 'pt loss', cx: f.x(i + 1), cy: f.y(loss[i]), r: 3 }, f.plot);
    $(id + '-alt').textContent = `The training loss went from ${fmt(loss[0])} after the first epoch to ${fmt(loss[loss.length - 1])} after epoch ${loss.length}.`;
    dataTable(figure, 'Loss per epoch', ['Epoch', 'Loss'], loss.map((v, i) => [String(i + 1), v]));
  }

  function drawFit(sample, target) {
    const id = 'plot-fit';
    const figure = $(id);
    const { actual, predicted } = sample;
    const [lo, hi] = padded(...extent(actual.concat(predicted)));
    const f = frame(figure.querySelector('.canvas'), {
      x: [lo, hi], y: [lo, hi], xLabel: `actual ${target}`, yLabel: `predicted ${target}`,
      titleId: id + '-title', altId: id + '-alt',
    });
    const g = s('g', {}, f.plot);
    for (let i = 0; i < actual.length; i += 1) s('circle', { class: 'pt', cx: f.x(actual[i]).toFixed(1), cy: f.y(predicted[i]).toFixed(1), r: 2.5 }, g);
    s('line', { class: 'ideal', x1: f.x(lo), y1: f.y(lo), x2: f.x(hi), y2: f.y(hi) }, f.plot);
    const rmse = Math.sqrt(actual.reduce((acc, a, i) => acc + (a - predicted[i]) ** 2, 0) / actual.length);
    $(id + '-alt').textContent = `${fmt(actual.length)} holdout rows (a seeded sample of ${fmt(sample.of_rows)}): predicted against actual ${target}, with the line y = x where a perfect model's points would lie. RMSE of these rows: ${fmt(rmse)}.`;
    dataTable(figure, 'Holdout pairs', [`Actual ${target}`, `Predicted ${target}`], actual.map((a, i) => [a, predicted[i]]));
  }

  function drawResiduals(sample, target) {
    const id = 'plot-residuals';
    const figure = $(id);
    const { actual, predicted } = sample;
    const residuals = actual.map((a, i) => a - predicted[i]);
    const [rlo, rhi] = extent(residuals);
    const bound = Math.max(Math.abs(rlo), Math.abs(rhi)) || 1;
    const f = frame(figure.querySelector('.canvas'), {
      x: padded(...extent(predicted)), y: [-bound * 1.08, bound * 1.08],
      xLabel: `predicted ${target}`, yLabel: 'residual (actual − predicted)', titleId: id + '-title', altId: id + '-alt',
    });
    s('line', { class: 'ideal', x1: f.m.left, x2: f.m.left + f.pw, y1: f.y(0), y2: f.y(0) }, f.plot);
    const g = s('g', {}, f.plot);
    for (let i = 0; i < residuals.length; i += 1) s('circle', { class: 'pt', cx: f.x(predicted[i]).toFixed(1), cy: f.y(residuals[i]).toFixed(1), r: 2.5 }, g);
    const above = residuals.filter((r) => r > 0).length;
    $(id + '-alt').textContent = `Residuals of ${fmt(residuals.length)} holdout rows against the prediction, around the zero line: ${fmt(above)} above it, ${fmt(residuals.length - above)} below; the largest is ${fmt(bound)} away.`;
    dataTable(figure, 'Residuals', [`Predicted ${target}`, 'Residual'], residuals.map((r, i) => [predicted[i], r]));
  }

  function drawHistogram(sample, target) {
    const id = 'plot-histogram';
    const figure = $(id);
    const residuals = sample.actual.map((a, i) => a - sample.predicted[i]);
    const n = residuals.length;
    const bins = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(n))));
    let [lo, hi] = extent(residuals);
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const width = (hi - lo) / bins;
    const counts = new Array(bins).fill(0);
    for (const r of residuals) counts[Math.min(bins - 1, Math.floor((r - lo) / width))] += 1;
    const f = frame(figure.querySelector('.canvas'), {
      x: [lo, hi], y: [0, Math.max(...counts) * 1.1], xLabel: `residual (${target})`, yLabel: 'rows',
      titleId: id + '-title', altId: id + '-alt',
    });
    counts.forEach((c, i) => {
      const x0 = f.x(lo + i * width);
      const x1 = f.x(lo + (i + 1) * width);
      s('rect', { class: 'bar', x: x0 + 0.5, y: f.y(c), width: Math.max(0.5, x1 - x0 - 1), height: f.y(0) - f.y(c) }, f.plot);
    });
    const peak = counts.indexOf(Math.max(...counts));
    $(id + '-alt').textContent = `${bins} bins of ${fmt(width)} from ${fmt(lo)} to ${fmt(hi)}; the fullest, ${fmt(lo + peak * width)} to ${fmt(lo + (peak + 1) * width)}, holds ${counts[peak]} of ${n} rows.`;
    dataTable(figure, 'Histogram bins', ['From', 'To', 'Rows'], counts.map((c, i) => [lo + i * width, lo + (i + 1) * width, String(c)]));
  }

  // One bar per numeric or boolean feature and per level: weights on the standardised scale.
  function coefficientBars(model) {
    const scale = model.target_scale || null;
    const bars = [];
    for (const f of schemaOf(model)) {
      if (f.kind === 'categorical') {
        for (const level of f.levels || []) {
          const value = typeof level.standardized === 'number' ? level.standardized : scale ? level.weight / scale : null;
          if (value !== null) bars.push({ label: `${f.name}=${level.level === '' ? '(empty)' : level.level}`, value });
        }
      } else {
        const value = typeof f.standardized === 'number' ? f.standardized
          : f.kind === 'boolean' && scale ? f.coefficient / scale : null;
        if (value !== null) bars.push({ label: f.name, value });
      }
    }
    return bars.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
  }

  function drawCoefficients(model) {
    const id = 'plot-coefficients';
    const figure = $(id);
    const all = coefficientBars(model);
    if (!all.length) return emptyPlot(id, 'This model has no standardised coefficients to show.');
    const MAX = 25;
    const bars = all.slice(0, MAX);
    const longest = Math.max(...bars.map((b) => b.label.length));
    const [lo, hi] = extent(bars.map((b) => b.value).concat([0]));
    const span = Math.max(hi - lo, 1e-12);
    const container = figure.querySelector('.canvas');
    const f = frame(container, {
      x: [lo - span * 0.05, hi + span * 0.05], y: [0, bars.length], noYTicks: true,
      left: Math.min(180, 12 + longest * 7.2), xLabel: 'standardised weight', yLabel: '',
      titleId: id + '-title', altId: id + '-alt',
    });
    const band = f.ph / bars.length;
    bars.forEach((b, i) => {
      const top = f.m.top + i * band;
      const x0 = f.x(Math.min(0, b.value));
      const x1 = f.x(Math.max(0, b.value));
      s('rect', { class: b.value < 0 ? 'bar neg' : 'bar', x: x0, y: top + band * 0.15, width: Math.max(1, x1 - x0), height: band * 0.7 }, f.plot);
      s('text', { class: 'tick', x: f.m.left - 6, y: top + band / 2 + 4, 'text-anchor': 'end', text: b.label }, f.svg);
    });
    s('line', { class: 'zero', x1: f.x(0), x2: f.x(0), y1: f.m.top, y2: f.m.top + f.ph }, f.plot);
    const top = bars.slice(0, 3).map((b) => `${b.label} (${fmt(b.value)})`).join(', ');
    const more = all.length > MAX ? ` The ${all.length - MAX} smallest are in the table only.` : '';
    $(id + '-alt').textContent = `${all.length} weights, each the change in the target, in its standard deviations, for one standard deviation of the feature; largest first: ${top}.${more}`;
    dataTable(figure, 'Standardised coefficients', ['Feature', 'Standardised weight'], all.map((b) => [b.label, b.value]));
  }

  function drawVersions(models) {
    const id = 'plot-versions';
    const points = models
      .filter((m) => m.metrics && m.metrics.holdout && typeof m.metrics.holdout.rmse === 'number' && m.created_at)
      .map((m) => ({ id: m.id, t: Date.parse(m.created_at), rmse: m.metrics.holdout.rmse, status: m.active ? 'active' : m.status }));
    if (!points.length) return emptyPlot(id, 'No versions with holdout metrics yet.');
    const figure = $(id);
    const [t0, t1] = extent(points.map((p) => p.t));
    const tspan = t1 > t0 ? t1 - t0 : 3600e3;
    const xDomain = t1 > t0 ? [t0 - tspan * 0.06, t1 + tspan * 0.06] : [t0 - tspan, t1 + tspan];
    const [r0, r1] = extent(points.map((p) => p.rmse));
    const f = frame(figure.querySelector('.canvas'), {
      x: xDomain, y: padded(Math.min(0, r0), r1), xLabel: 'created (UTC)', yLabel: 'holdout RMSE',
      titleId: id + '-title', altId: id + '-alt', noXTicks: true, top: 32,
    });
    // Time ticks: a few evenly spaced instants, labelled by date or time as the span needs.
    const spanMs = xDomain[1] - xDomain[0];
    const n = Math.max(2, Math.floor(f.pw / 110));
    for (let i = 0; i <= n; i += 1) {
      const t = xDomain[0] + (spanMs * (i + 0.5)) / (n + 1);
      const iso = new Date(t).toISOString();
      // As precise as the span needs: dates, minutes, seconds, or milliseconds.
      const label = spanMs > 2 * 86400e3 ? iso.slice(0, 10) : spanMs > 600e3 ? iso.slice(11, 16)
        : spanMs > 10e3 ? iso.slice(11, 19) : iso.slice(14, 23);
      s('line', { class: 'grid', x1: f.x(t), x2: f.x(t), y1: f.m.top, y2: f.m.top + f.ph }, f.svg.querySelector('.axes'));
      s('text', { class: 'tick', x: f.x(t), y: f.m.top + f.ph + 16, 'text-anchor': 'middle', text: label }, f.svg.querySelector('.axes'));
    }
    const g = s('g', {}, f.plot);
    for (const p of points) {
      const cx = f.x(p.t);
      const cy = f.y(p.rmse);
      if (p.status === 'rejected') {
        s('path', { class: 'pt version rejected', d: `M${cx - 4},${cy - 4}L${cx + 4},${cy + 4}M${cx - 4},${cy + 4}L${cx + 4},${cy - 4}` }, g);
      } else {
        s('circle', { class: `pt version ${p.status === 'active' ? 'active' : 'promoted'}`, cx, cy, r: p.status === 'active' ? 6 : 4 }, g);
      }
    }
    const legend = s('g', { class: 'legend' }, f.svg);
    // Above the plot area, so it never hides a point.
    const lx = f.m.left + 6;
    const ly = 14;
    s('circle', { class: 'pt version promoted', cx: lx, cy: ly, r: 4 }, legend);
    s('text', { class: 'tick', x: lx + 8, y: ly + 4, text: 'promoted' }, legend);
    s('circle', { class: 'pt version active', cx: lx + 80, cy: ly, r: 6 }, legend);
    s('text', { class: 'tick', x: lx + 90, y: ly + 4, text: 'active' }, legend);
    s('path', { class: 'pt version rejected', d: `M${lx + 140},${ly - 4}L${lx + 148},${ly + 4}M${lx + 140},${ly + 4}L${lx + 148},${ly - 4}` }, legend);
    s('text', { class: 'tick', x: lx + 154, y: ly + 4, text: 'rejected' }, legend);
    const best = points.reduce((a, b) => (b.rmse < a.rmse ? b : a));
    $(id + '-alt').textContent = `${points.length} versions by creation time; each one's RMSE on its own holdout rows. The lowest is ${fmt(best.rmse)} (${best.id}).`;
    dataTable(figure, 'Versions', ['Version', 'Created', 'Status', 'Holdout RMSE'],
      points.map((p) => [p.id, new Date(p.t).toISOString(), p.status, p.rmse]));
  }

  // -- versions, with rollback ----------------------------------------------------------------

  function renderVersions() {
    const tbody = $('versions-table').querySelector('tbody');
    tbody.replaceChildren();
    const list = (state.models.models || []).slice().reverse();
    if (!list.length) {
      tbody.append(h('tr', {}, h('td', { colspan: '6', text: 'No versions yet.' })));
    }
    const active = state.models.active;
    const activeIndex = list.findIndex((m) => m.id === active);
    list.forEach((m, i) => {
      const status = m.active ? 'active' : (m.status || '–');
      const rmse = m.metrics && m.metrics.holdout ? m.metrics.holdout.rmse : null;
      let action = '';
      if (!m.active && !m.error) {
        const older = activeIndex >= 0 && i > activeIndex;
        const label = older ? 'Roll back' : 'Activate';
        action = h('button', { type: 'button', class: 'activate', 'data-version': m.id, 'aria-label': `${label} to version ${m.id}`, text: label });
        action.addEventListener('click', () => activate(m.id, action));
      }
      tbody.append(h('tr', { 'data-version': m.id, class: m.active ? 'is-active' : null },
        h('th', { scope: 'row', 'data-label': 'Version' }, h('code', { text: m.id })),
        h('td', { 'data-label': 'Created', text: when(m.created_at) }),
        h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${status}`, text: status })),
        h('td', { class: 'num', 'data-label': 'Holdout RMSE', 'data-value': rmse === null ? '' : String(rmse), text: fmt(rmse) }),
        h('td', { class: 'reason', 'data-label': 'Gate', text: m.error || (m.gate && m.gate.reason) || '–' }),
        h('td', action ? { 'data-label': 'Action' } : {}, action)));
    });
    if (state.models.current_error) say(state.models.current_error, 'error');
    const htbody = $('history-table').querySelector('tbody');
    htbody.replaceChildren();
    const hist = state.history || [];
    if (!hist.length) htbody.append(h('tr', {}, h('td', { colspan: '4', text: 'No promotions yet.' })));
    for (let i = hist.length - 1; i >= 0; i -= 1) {
      const e = hist[i];
      const until = i + 1 < hist.length ? when(hist[i + 1].time) : 'now';
      htbody.append(h('tr', {}, h('td', { 'data-label': 'From', text: when(e.time) }), h('td', { 'data-label': 'Until', text: until }),
        h('th', { scope: 'row', 'data-label': 'Version' }, h('code', { text: e.version })),
        h('td', { 'data-label': 'Replaced' }, e.previous ? h('code', { text: e.previous }) : 'none')));
    }
  }

  async function activate(version, button) {
    const current = state.models.active;
    const text = current
      ? `Make ${version} the active version in place of ${current}? Every worker serves it within about a second. It is refused if another version became active since this page loaded.`
      : `Make ${version} the active version?`;
    const token = await askToken(`Activate ${version}?`, text, 'Activate');
    if (token === null) {
      say('Activation cancelled.');
      button.focus();
      return;
    }
    say(`Activating ${version}…`);
    try {
      const headers = writeHeaders(token, current ? { 'If-Match': current } : {});
      const answer = await api(`/models/${encodeURIComponent(version)}/activate`, { method: 'POST', headers });
      await waitForModel(version);
      await load();
      say(`Version ${answer.active} is now active (it replaced ${answer.previous || 'none'}).`, 'ok');
    } catch (e) {
      await reportWriteError(e, `Version ${version} was not activated`);
    }
    $('versions-title').focus();
  }

  async function reportWriteError(e, prefix) {
    if (e instanceof ApiError && e.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    let text = `${prefix}: ${e.message}`;
    if (e instanceof ApiError && e.code === 'current_changed') {
      text = `${prefix}: ${e.detail.current || 'another version'} became active since this page loaded. The page now shows it; decide again.`;
    }
    try { await load(); } catch (_) { /* keep the message below */ }
    say(text, 'error');
    return text;
  }

  // The confirmation dialog: resolves to the token (kept in sessionStorage) or null.
  function askToken(title, text, confirmLabel) {
    const dialog = $('confirm');
    const input = $('confirm-token');
    if (dialog.open) return Promise.resolve(null); // one question at a time
    $('confirm-title').textContent = title;
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = confirmLabel;
    input.value = sessionStorage.getItem(TOKEN_KEY) || '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => {
        const token = input.value.trim();
        input.value = '';
        if (dialog.returnValue === 'confirm' && token) {
          sessionStorage.setItem(TOKEN_KEY, token);
          updateForget();
          resolve(token);
        } else {
          resolve(null);
        }
      }, { once: true });
      dialog.returnValue = '';
      dialog.showModal();
      input.focus();
    });
  }

  function updateForget() {
    $('forget-token').disabled = !sessionStorage.getItem(TOKEN_KEY);
  }

  // -- the prediction form, built from the model's schema --------------------------------------

  const EMPTY = '\u0000empty';

  function renderForm() {
    const fields = $('predict-fields');
    fields.replaceChildren();
    const button = $('predict-button');
    $('prediction').replaceChildren();
    if (!state.model) {
      fields.append(h('p', { text: 'There is no model to predict with yet.' }));
      button.disabled = true;
      return;
    }
    button.disabled = false;
    schemaOf(state.model).forEach((f, i) => fields.append(fieldFor(f, i)));
  }

  function fieldFor(f, i) {
    const id = `feature-${i}`;
    const hintId = `${id}-hint`;
    const label = h('label', { for: id, text: f.name });
    const hints = [];
    let control;
    if (f.kind === 'categorical') {
      control = h('select', { id, name: f.name, 'data-kind': 'categorical', 'aria-describedby': hintId });
      const levels = (f.levels || []).slice();
      const hasEmpty = levels.some((l) => l.level === '');
      let best = null;
      for (const level of levels) {
        if (best === null || level.count > best.count) best = level;
        const value = level.level === '' ? EMPTY : level.level;
        const text = level.level === '' ? '(empty)' : level.level;
        control.append(h('option', { value, text: `${text} (${fmt(level.count)} rows)` }));
      }
      if (f.imputes && !hasEmpty) control.append(h('option', { value: EMPTY, text: '(empty)' }));
      if (best) control.value = best.level === '' ? EMPTY : best.level;
      hints.push(`${levels.length} levels seen in training`);
      if (f.other && f.other.pooled) hints.push(`${fmt(f.other.pooled)} rarer ones pooled as other`);
    } else if (f.kind === 'boolean') {
      control = h('select', { id, name: f.name, 'data-kind': 'boolean', 'aria-describedby': hintId });
      const yes = (f.true && f.true.length) ? f.true : null;
      const no = (f.false && f.false.length) ? f.false : null;
      control.append(h('option', { value: 'true', text: yes ? `true (${yes.join(', ')})` : 'true' }));
      control.append(h('option', { value: 'false', text: no ? `false (${no.join(', ')})` : 'false' }));
      if (f.imputes) control.append(h('option', { value: EMPTY, text: '(empty)' }));
      hints.push('yes or no');
    } else {
      control = h('input', {
        id, name: f.name, type: 'number', step: 'any', inputmode: 'decimal', 'data-kind': 'numeric',
        required: !f.imputes, 'aria-describedby': hintId,
      });
      if (typeof f.mean === 'number') control.value = String(Number(f.mean.toPrecision(3)));
      if (typeof f.min === 'number' && typeof f.max === 'number') hints.push(`training range ${fmt(f.min)} to ${fmt(f.max)}`);
      if (typeof f.mean === 'number') hints.push(`mean ${fmt(f.mean)}`);
    }
    if (f.imputes) hints.push(f.kind === 'categorical' ? 'may be empty' : 'may be left empty (imputed)');
    const hint = h('p', { class: 'hint', id: hintId, text: hints.join('; ') });
    return h('div', { class: 'field' }, label, control, hint);
  }

  // The row the form describes, typed as /predict takes it: numbers, strings, booleans, null.
  function formRow() {
    const row = {};
    const problems = [];
    schemaOf(state.model).forEach((f, i) => {
      const control = $(`feature-${i}`);
      control.removeAttribute('aria-invalid');
      const raw = control.value;
      if (f.kind === 'categorical') {
        row[f.name] = raw === EMPTY ? null : raw;
      } else if (f.kind === 'boolean') {
        if (raw === EMPTY) row[f.name] = null;
        else {
          // The words seen in training are what /predict is sure to take.
          const words = raw === 'true' ? f.true : f.false;
          row[f.name] = words && words.length ? words[0] : raw === 'true';
        }
      } else if (raw.trim() === '') {
        if (f.imputes) row[f.name] = null;
        else problems.push([control, `${f.name} needs a number`]);
      } else {
        const value = Number(raw);
        if (!Number.isFinite(value)) problems.push([control, `${f.name} must be a finite number`]);
        else row[f.name] = value;
      }
    });
    return { row, problems };
  }

  const INTERVAL_LEVEL = 0.9;

  function explanationTable(explanation) {
    const log = explanation.scale === 'log';
    const parts = Object.entries(explanation.contributions).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
    return h('details', { class: 'more', id: 'prediction-explanation' },
      h('summary', { text: `Why: each feature's contribution${log ? ' (log scale)' : ''}` }),
      h('table', { id: 'explanation-table' },
        h('caption', { text: `Base value ${fmt(explanation.base_value)} (the prediction at the training means), plus:` }),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Feature' }), h('th', { scope: 'col', text: 'Contribution' }))),
        h('tbody', {}, ...parts.map(([name, v]) => h('tr', {}, h('th', { scope: 'row', text: name }),
          h('td', { class: 'num', 'data-value': String(v), text: signed(v) }))))));
  }

  async function onPredict(event) {
    event.preventDefault();
    const out = $('prediction');
    const { row, problems } = formRow();
    if (problems.length) {
      for (const [control] of problems) control.setAttribute('aria-invalid', 'true');
      out.replaceChildren(h('p', { class: 'error', text: problems.map((p) => p[1]).join('; ') + '.' }));
      problems[0][0].focus();
      return;
    }
    out.replaceChildren(h('p', { text: 'Predicting…' }));
    try {
      // A 90% interval when the version's holdout residuals support one, and the explanation.
      const calibration = (state.model.manifest || {}).calibration || {};
      const request = { features: row, explain: true };
      if ((calibration.max_level || 0) >= INTERVAL_LEVEL) request.interval = INTERVAL_LEVEL;
      const answer = await api('/predict', {
        method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(request),
      });
      const value = h('output', { id: 'prediction-value', 'data-value': String(answer.prediction), text: fmt(answer.prediction) });
      const lines = [h('p', { class: 'result' }, `${state.model.target}: `, value)];
      if (answer.interval) {
        lines.push(h('p', { id: 'prediction-interval', text: `${Math.round(100 * answer.interval.level)}% prediction interval: ${fmt(answer.interval.lower)} to ${fmt(answer.interval.upper)}` }));
      }
      if (answer.explanation) lines.push(explanationTable(answer.explanation));
      lines.push(h('p', { class: 'hint' }, 'by model version ', h('code', { id: 'prediction-version', text: answer.model_version }),
        answer.prediction_id ? h('span', {}, ', prediction id ', h('code', { id: 'prediction-id', text: answer.prediction_id })) : null));
      if (answer.model_version !== state.model.model_version) {
        lines.push(h('p', { class: 'warn', text: `The page shows version ${state.model.model_version}; reload it to see the one that answered.` }));
      }
      out.replaceChildren(...lines);
    } catch (e) {
      const text = e.message;
      schemaOf(state.model).forEach((f, i) => {
        if (text.includes(`'${f.name}'`)) $(`feature-${i}`).setAttribute('aria-invalid', 'true');
      });
      out.replaceChildren(h('p', { class: 'error', text: `Not predicted: ${text}` }));
    }
  }

  // -- retraining ------------------------------------------------------------------------------

  async function onRetrain(event) {
    event.preventDefault();
    const form = $('retrain-form');
    const out = $('retrain-status');
    const file = $('retrain-file');
    if (!file.files.length) {
      file.setAttribute('aria-invalid', 'true');
      out.replaceChildren(h('p', { class: 'error', text: 'Choose a CSV file to train on.' }));
      file.focus();
      return;
    }
    file.removeAttribute('aria-invalid');
    const body = new FormData();
    for (const [name, value] of new FormData(form).entries()) {
      if (value instanceof File ? value.size || value.name : String(value).trim() !== '') body.append(name, value);
    }
    const token = await askToken('Start retraining?', `Train a new version on ${file.files[0].name}. It is promoted only if it passes the gate${body.get('force') ? ' (forced: it will be promoted)' : ''}.`, 'Start');
    if (token === null) {
      out.replaceChildren(h('p', { text: 'Retraining cancelled.' }));
      $('retrain-button').focus();
      return;
    }
    const button = $('retrain-button');
    button.disabled = true;
    out.replaceChildren(h('p', { text: 'Uploading…' }));
    let accepted = null;
    try {
      accepted = await api('/retrain', { method: 'POST', headers: writeHeaders(token), body });
      await follow(accepted, out);
    } catch (e) {
      const prefix = accepted ? `Lost track of job ${accepted.job_id} (${accepted.status_url})` : 'Retraining did not start';
      const text = await reportWriteError(e, prefix);
      out.replaceChildren(h('p', { class: 'error', text }));
    } finally {
      button.disabled = false;
    }
  }

  async function follow(accepted, out) {
    const started = Date.now();
    let job = accepted;
    while (job.status === 'queued' || job.status === 'running') {
      const seconds = Math.round((Date.now() - started) / 1000);
      out.replaceChildren(h('p', { 'data-status': job.status, text: `Job ${job.job_id}: ${job.status}${seconds ? ` (${seconds} s)` : ''}…` }));
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await api(accepted.status_url);
    }
    const metrics = job.metrics || {};
    const rmse = metrics.holdout && metrics.holdout.rmse;
    const old = metrics.active_holdout && metrics.active_holdout.rmse;
    const both = `holdout RMSE ${fmt(rmse)}${typeof old === 'number' ? ` against the active model's ${fmt(old)} on the same rows` : ''}`;
    let text;
    if (job.status === 'promoted') {
      text = `Promoted: version ${job.version} is active (${both}).`;
      await waitForModel(job.version);
    } else if (job.status === 'rejected') {
      text = `Rejected: version ${job.version} is kept but not active (${both}). ${job.reason || ''}`;
    } else {
      text = `Failed: ${job.reason || 'no reason given'}`;
    }
    await load();
    out.replaceChildren(h('p', { class: job.status === 'failed' ? 'error' : job.status === 'rejected' ? 'warn' : 'ok', 'data-status': job.status, text }));
    say(text, job.status === 'promoted' ? 'ok' : 'warn');
  }

  // -- monitoring ------------------------------------------------------------------------------

  const share = (x) => (typeof x === 'number' ? `${(100 * x).toFixed(1)}%` : '–');
  const STATUS_WORDS = { ok: 'ok', warn: 'warn', act: 'act: retrain', few_rows: 'too few rows', unknown: '–' };

  async function loadMonitoring(refresh) {
    const body = $('monitoring-body');
    try {
      const report = await api('/monitoring' + (refresh ? '?refresh=true' : ''));
      renderMonitoring(report);
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error', text: `The monitoring report could not be loaded: ${e.message}` }));
    }
    document.body.dataset.monitoring = 'ready';
  }

  function renderMonitoring(report) {
    const body = $('monitoring-body');
    const win = report.window || {};
    const feedback = report.feedback || {};
    const facts = [
      ['Version', report.model_version ? h('code', { text: report.model_version }) : '–'],
      ['Window', `${win.from ? when(win.from) : 'the start'} to ${when(win.to)}`],
      ['Predictions', fmt(report.predictions || 0)],
      ['With feedback', fmt(report.rows_with_feedback || 0)],
      ['Labelled rows', fmt(feedback.labelled_rows || 0)],
      ['Joined at', when(report.generated_at)],
    ];
    const dl = h('dl', { class: 'facts', id: 'monitoring-facts' });
    for (const [term, value] of facts) dl.append(h('dt', { text: term }), h('dd', {}, value));
    const live = report.live || {};
    const holdout = report.holdout || {};
    const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b ? `${(a / b).toFixed(2)}×` : '–');
    const quality = h('table', { id: 'monitoring-quality', class: 'cards' },
      h('caption', { text: 'Live quality against the holdout' }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Metric' }), h('th', { scope: 'col', text: 'Live' }),
        h('th', { scope: 'col', text: 'Holdout' }), h('th', { scope: 'col', text: 'Live / holdout' }))),
      h('tbody', {}, ...['rmse', 'mae'].map((k) => h('tr', {},
        h('th', { scope: 'row', 'data-label': 'Metric', text: k.toUpperCase() }),
        h('td', { class: 'num', 'data-label': 'Live', 'data-value': live[k] ?? '', text: fmt(live[k]) }),
        h('td', { class: 'num', 'data-label': 'Holdout', text: fmt(holdout[k]) }),
        h('td', { class: 'num', 'data-label': 'Live / holdout', text: ratio(live[k], holdout[k]) })))));
    const cov = report.interval_coverage || {};
    const coverage = h('p', { id: 'monitoring-coverage', text: typeof cov.observed === 'number'
      ? `${Math.round(100 * cov.level)}% intervals covered ${share(cov.observed)} of ${fmt(cov.rows)} rows with feedback.`
      : `No interval coverage yet: no feedback in the window (level ${cov.level}).` });
    const alerts = (report.alerts || []).length
      ? h('ul', { class: 'alerts', id: 'monitoring-alerts' }, ...report.alerts.map((a) => h('li', { text: a })))
      : h('p', { id: 'monitoring-alerts', class: 'ok', text: 'No alerts.' });
    const rows = Object.entries(report.drift || {});
    const drift = h('div', { class: 'table-wrap', role: 'region', 'aria-labelledby': 'drift-caption', tabindex: '0' },
      h('table', { id: 'drift-table', class: 'cards' },
        h('caption', { id: 'drift-caption', text: 'Drift of each feature against training (PSI: under 0.1 stable, 0.1 to 0.25 worth a look, over 0.25 act)' }),
        h('thead', {}, h('tr', {}, ...['Feature', 'Kind', 'PSI', 'Status', 'Unseen', 'Missing', 'Inputs'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, ...(rows.length ? rows.map(([name, d]) => h('tr', { 'data-feature': name },
          h('th', { scope: 'row', 'data-label': 'Feature', text: name }),
          h('td', { 'data-label': 'Kind', text: d.kind || '–' }),
          h('td', { class: 'num', 'data-label': 'PSI', 'data-value': d.psi ?? '', text: typeof d.psi === 'number' ? d.psi.toFixed(3) : '–' }),
          h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${d.status}`, text: STATUS_WORDS[d.status] || d.status })),
          h('td', { class: 'num', 'data-label': 'Unseen', text: share(d.unseen_share) }),
          h('td', { class: 'num', 'data-label': 'Missing', text: share(d.missing_share) }),
          h('td', { class: 'num', 'data-label': 'Inputs', text: fmt(d.rows) }))) : [h('tr', {}, h('td', { colspan: '7', text: 'No predictions of this version in the window yet.' }))]))));
    body.replaceChildren(h('div', { class: 'monitor-grid' },
      h('div', {}, dl), h('div', {}, quality, coverage, alerts)), drift);
  }

  // -- start -----------------------------------------------------------------------------------

  function start() {
    $('predict-form').addEventListener('submit', onPredict);
    $('retrain-form').addEventListener('submit', onRetrain);
    $('monitoring-refresh').addEventListener('click', () => loadMonitoring(true));
    $('forget-token').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      updateForget();
      say('The API token is forgotten.');
    });
    updateForget();
    let width = $('plots').clientWidth;
    let timer = null;
    new ResizeObserver(() => {
      if ($('plots').clientWidth === width || !state.models) return;
      width = $('plots').clientWidth;
      clearTimeout(timer);
      timer = setTimeout(renderPlots, 150);
    }).observe($('plots'));
    const t0 = performance.now();
    load().then(() => {
      document.body.dataset.ready = 'true';
      document.body.dataset.renderMs = String(Math.round(performance.now() - t0));
      return loadMonitoring(false);  // after the page's own data: a join may take a while
    }).catch((e) => say(`The page could not load its data: ${e.message}`, 'error'));
  }

  start();
}());

// Charts drawn as SVG in plain JavaScript: no library to vendor, nothing fetched.
// Each chart is drawn at its container's width in pixels (not scaled from a viewBox), so
// that labels keep their size on a phone, and is drawn again when that width changes.

import { compactNumber, count, money, moneyRange, plural, tickFormatter } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
let clipIds = 0;

function svg(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (parent) parent.append(node);
  return node;
}

function tooltip(node, text) {
  svg("title", {}, node).textContent = text;
  return node;
}

const extent = (values) => [Math.min(...values), Math.max(...values)];
const round = (value) => Math.round(value * 10) / 10;

// Drawing at the container's width, again whenever it changes.

const drawings = new WeakMap();
const resized = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const drawing = drawings.get(entry.target);
    const width = Math.round(entry.contentRect.width);
    if (drawing && width > 0 && width !== drawing.width) {
      drawing.width = width;
      drawing.render();
    }
  }
});

function draw(container, render) {
  drawings.set(container, { render, width: Math.round(container.clientWidth) });
  resized.observe(container);
  render();
}

/** A chart's place, saying why there is no chart there. */
export function placeholder(container, message) {
  drawings.delete(container);
  resized.unobserve(container);
  const note = document.createElement("p");
  note.className = "chart-empty";
  note.textContent = message;
  container.replaceChildren(note);
}

// Scales and ticks.

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const mantissa = raw / power;
  return (mantissa < 1.5 ? 1 : mantissa < 3 ? 2 : mantissa < 7 ? 5 : 10) * power;
}

/** [lo, hi] widened to whole tick steps; a single value gets some room around it. */
export function niceDomain(lo, hi, ticks = 5) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const step = niceStep(hi - lo, ticks);
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
}

function linearTicks([lo, hi], count) {
  const step = niceStep(hi - lo, count);
  const first = Math.ceil(lo / step - 1e-9);
  const values = [];
  // + 0 turns -0 into 0, which would otherwise print as "-0".
  for (let i = first; i * step <= hi + step * 1e-9; i += 1) values.push(i * step + 0);
  return { values, step };
}

function linear([d0, d1], [r0, r1]) {
  const span = d1 - d0 || 1;
  return (value) => r0 + ((value - d0) / span) * (r1 - r0);
}

function logScale([d0, d1], [r0, r1]) {
  const [l0, l1] = [Math.log10(d0), Math.log10(d1)];
  return (value) => r0 + ((Math.log10(value) - l0) / (l1 - l0 || 1)) * (r1 - r0);
}

function logTicks([lo, hi]) {
  const [e0, e1] = [Math.floor(Math.log10(lo)), Math.ceil(Math.log10(hi))];
  const decades = e1 - e0;
  const mantissas = decades > 3 ? [1] : decades > 1 ? [1, 3] : [1, 2, 5];
  const values = [];
  for (let e = e0; e <= e1; e += 1) {
    for (const m of mantissas) {
      const value = m * 10 ** e;
      if (value >= lo && value <= hi) values.push(value);
    }
  }
  // Less than a decade shows too few powers: plain steps read better there.
  return values.length >= 3 ? values : linearTicks([lo, hi], 4).values.filter((v) => v > 0);
}

// The frame: an SVG of the container's width, a plot area inside margins, axes and labels.

function frame(container, { height, label, yTickLabels, bottom = 44 }) {
  const width = Math.max(240, Math.round(container.clientWidth));
  const longest = Math.max(0, ...yTickLabels.map((text) => text.length));
  const left = 30 + longest * 7;
  const plot = { left, top: 14, right: width - 16, bottom: height - bottom };
  const root = svg("svg", {
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": label,
    class: "plot",
  });
  const clipId = `plot-clip-${(clipIds += 1)}`;
  const clip = svg("clipPath", { id: clipId }, svg("defs", {}, root));
  svg(
    "rect",
    { x: plot.left, y: plot.top, width: plot.right - plot.left, height: plot.bottom - plot.top },
    clip,
  );
  container.replaceChildren(root);
  return {
    root,
    plot,
    width,
    height,
    layer: (className) => svg("g", { class: className, "clip-path": `url(#${clipId})` }, root),
  };
}

function axes(chart, { x, y, xTicks, yTicks, xLabel, yLabel }) {
  const { root, plot, height } = chart;
  const group = svg("g", { class: "axes" }, root);
  for (const { value, text } of yTicks) {
    const py = round(y(value));
    svg("line", { x1: plot.left, x2: plot.right, y1: py, y2: py, class: "grid" }, group);
    const label = svg(
      "text",
      { x: plot.left - 8, y: py, class: "tick", "text-anchor": "end" },
      group,
    );
    label.setAttribute("dy", "0.32em");
    label.textContent = text;
  }
  for (const { value, text } of xTicks) {
    const px = round(x(value));
    svg(
      "line",
      { x1: px, x2: px, y1: plot.bottom, y2: plot.bottom + 5, class: "tick-mark" },
      group,
    );
    const label = svg(
      "text",
      { x: px, y: plot.bottom + 18, class: "tick", "text-anchor": "middle" },
      group,
    );
    label.textContent = text;
  }
  svg(
    "line",
    { x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, class: "axis" },
    group,
  );
  svg(
    "line",
    { x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom, class: "axis" },
    group,
  );
  const xTitle = svg(
    "text",
    { x: (plot.left + plot.right) / 2, y: height - 6, class: "axis-label" },
    group,
  );
  xTitle.setAttribute("text-anchor", "middle");
  xTitle.textContent = xLabel;
  const yTitle = svg("text", { class: "axis-label", "text-anchor": "middle" }, group);
  yTitle.setAttribute("transform", `translate(14 ${(plot.top + plot.bottom) / 2}) rotate(-90)`);
  yTitle.textContent = yLabel;
}

function linearAxis(domain, span, pixelsPerTick, { integer = false, ...options } = {}) {
  const { values, step } = linearTicks(domain, Math.max(2, Math.floor(span / pixelsPerTick)));
  const format = tickFormatter(integer ? Math.max(1, step) : step, options);
  return values
    .filter((value) => !integer || Number.isInteger(value))
    .map((value) => ({ value, text: format(value) }));
}

function legend(container, entries) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const [swatch, text] of entries) {
    const item = document.createElement("li");
    const mark = document.createElement("span");
    mark.className = `swatch ${swatch}`;
    mark.setAttribute("aria-hidden", "true");
    item.append(mark, text);
    list.append(item);
  }
  container.append(list);
}

const points = (pairs) => pairs.map(([px, py]) => `${round(px)},${round(py)}`).join(" ");

function chartHeight(container, ratio, min, max) {
  return Math.round(Math.min(max, Math.max(min, container.clientWidth * ratio)));
}

// 1. Sales against carats, with the active model's line and its 95% prediction band.

/**
 * @param sales   [{carats, price}] (price: an amount string)
 * @param quotes  [{carats, price, interval: {lower, upper}}] from POST /predict, or null
 */
export function salesChart(container, { sales, quotes, version, caption }) {
  draw(container, () => {
    const height = chartHeight(container, 0.6, 260, 420);
    const caratValues = [...sales.map((s) => s.carats), ...(quotes ?? []).map((q) => q.carats)];
    const priceValues = [
      ...sales.map((s) => Number(s.price)),
      ...(quotes ?? []).flatMap((q) =>
        [q.price, q.interval?.lower ?? q.price, q.interval?.upper ?? q.price].map(Number),
      ),
    ];
    const xDomain = niceDomain(0, Math.max(...caratValues));
    // From $0: a price is never negative, so a band reaching below it is cut off there.
    const yDomain = niceDomain(0, Math.max(...priceValues));
    const yTicks = linearAxis(yDomain, height - 60, 50, { currency: true });
    const chart = frame(container, {
      height,
      label: caption,
      yTickLabels: yTicks.map((t) => t.text),
    });
    const { plot } = chart;
    const x = linear(xDomain, [plot.left, plot.right]);
    const y = linear(yDomain, [plot.bottom, plot.top]);
    axes(chart, {
      x,
      y,
      xTicks: linearAxis(xDomain, plot.right - plot.left, 70),
      yTicks,
      xLabel: "carats of gold",
      yLabel: "price (USD)",
    });
    if (quotes?.length && quotes[0].interval) {
      const upper = quotes.map((q) => [x(q.carats), y(Number(q.interval.upper))]);
      const lower = quotes.map((q) => [x(q.carats), y(Number(q.interval.lower))]).reverse();
      svg(
        "polygon",
        { points: points([...upper, ...lower]), class: "band" },
        chart.layer("band-layer"),
      );
    }
    const dots = chart.layer("sales-points");
    for (const sale of sales) {
      svg(
        "circle",
        { cx: round(x(sale.carats)), cy: round(y(Number(sale.price))), r: 2.6, class: "sale" },
        dots,
      );
    }
    if (quotes?.length) {
      const line = quotes.map((q) => [x(q.carats), y(Number(q.price))]);
      svg("polyline", { points: points(line), class: "model-line" }, chart.layer("model-layer"));
    }
    legend(container, [
      ["swatch-sale", sales.length ? `sale (${count(sales.length)} shown)` : "no sales"],
      ...(quotes?.length ? [["swatch-line", `active model, version ${version}`]] : []),
      ...(quotes?.[0]?.interval ? [["swatch-band", "95% prediction interval"]] : []),
    ]);
  });
}

// 3. Cost against iteration, on a log scale.

export function costChart(container, { iterations, cost, minCost, caption }) {
  draw(container, () => {
    const height = chartHeight(container, 0.62, 240, 330);
    // A log axis has no place for a cost of 0 (sales exactly on a line): those sit on its floor.
    const values = (minCost === null ? cost : [...cost, minCost]).filter((c) => c > 0);
    let [lo, hi] = values.length ? extent(values) : [1, 1];
    [lo, hi] = [lo / 1.6, hi * 1.6];
    const floored = (c) => Math.max(c, lo);
    const yTicks = logTicks([lo, hi]).map((value) => ({ value, text: compactNumber(value) }));
    // A single iteration sits in the middle rather than on the right edge.
    const xDomain = niceDomain(0, Math.max(...iterations) * (iterations.length > 1 ? 1 : 2));
    const chart = frame(container, {
      height,
      label: caption,
      yTickLabels: yTicks.map((t) => t.text),
    });
    const { plot } = chart;
    const x = linear(xDomain, [plot.left, plot.right]);
    const y = logScale([lo, hi], [plot.bottom, plot.top]);
    axes(chart, {
      x,
      y,
      xTicks: linearAxis(xDomain, plot.right - plot.left, 70, { integer: true }),
      yTicks,
      xLabel: "iteration",
      yLabel: "cost J (USD², log scale)",
    });
    const layer = chart.layer("cost-layer");
    if (minCost !== null) {
      const py = round(y(floored(minCost)));
      svg("line", { x1: plot.left, x2: plot.right, y1: py, y2: py, class: "reference" }, layer);
    }
    const line = iterations.map((it, i) => [x(it), y(floored(cost[i]))]);
    svg("polyline", { points: points(line), class: "cost-line" }, layer);
    if (iterations.length <= 60) {
      iterations.forEach((it, i) => {
        const dot = svg(
          "circle",
          { cx: round(x(it)), cy: round(y(floored(cost[i]))), r: 3, class: "cost-dot" },
          layer,
        );
        tooltip(dot, `iteration ${count(it)}: J = ${cost[i].toPrecision(6)}`);
      });
    }
    legend(container, [
      ["swatch-cost", `cost J after each iteration (${plural(iterations.length, "point")})`],
      ...(minCost === null
        ? []
        : [["swatch-reference", `least-squares minimum, J = ${minCost.toPrecision(6)}`]]),
    ]);
  });
}

// 4. The descent on the cost surface J(silver, gold) = min + d·(H d)/2, d = (s, g) - optimum.

function eigen([[a, b], [, c]]) {
  const mean = (a + c) / 2;
  const root = Math.hypot((a - c) / 2, b);
  const large = mean + root;
  const small = (a * c - b * b) / large; // no cancellation, unlike mean - root
  const [vx, vy] = Math.abs(b) > 0 ? [large - c, b] : a >= c ? [1, 0] : [0, 1];
  const norm = Math.hypot(vx, vy);
  return {
    values: [large, small],
    axes: [
      [vx / norm, vy / norm],
      [-vy / norm, vx / norm],
    ],
  };
}

/** An axis's window around what must show; a single value gets `fallback` either side. */
function around(values, fallback) {
  let [lo, hi] = extent(values);
  if (!(hi - lo > 1e-9 * Math.max(1, Math.abs(hi)))) [lo, hi] = [lo - fallback, hi + fallback];
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

const LEVELS = 9;

export function descentChart(container, { path, surface, spread, caption }) {
  draw(container, () => {
    const height = chartHeight(container, 0.75, 260, 380);
    const { optimum, min_cost: minCost, hessian } = surface;
    const [[h11, h12], [, h22]] = hessian;
    const cost = ([s, g]) => {
      const [ds, dg] = [s - optimum[0], g - optimum[1]];
      return minCost + (h11 * ds * ds + 2 * h12 * ds * dg + h22 * dg * dg) / 2;
    };
    const shown = [...path, optimum];
    const sDomain = around(
      shown.map((p) => p[0]),
      spread[0],
    );
    const gDomain = around(
      shown.map((p) => p[1]),
      spread[1],
    );
    const yTicks = linearAxis(gDomain, height - 60, 50, { currency: true });
    const chart = frame(container, {
      height,
      label: caption,
      yTickLabels: yTicks.map((t) => t.text),
    });
    const { plot } = chart;
    // Each axis has its own scale: the gold price moves over a range many times narrower
    // or wider than the silver price, and one shared scale would flatten the picture.
    const x = linear(sDomain, [plot.left, plot.right]);
    const y = linear(gDomain, [plot.bottom, plot.top]);
    axes(chart, {
      x,
      y,
      xTicks: linearAxis(sDomain, plot.right - plot.left, 80, { currency: true }),
      yTicks,
      xLabel: "silver price (USD)",
      yLabel: "gold price per carat (USD)",
    });

    // Levels spaced geometrically in J - min, from the path's highest cost down to where it
    // ended; a path with nowhere to come from takes the window's corners as its top.
    const excess = path.map((p) => cost(p) - minCost);
    const corners = sDomain.flatMap((s) => gDomain.map((g) => cost([s, g]) - minCost));
    const highest = path.length > 1 ? Math.max(...excess) : 0;
    const top = highest > 0 ? highest : Math.max(...corners);
    const reached = excess.filter((e) => e > 0 && e < top);
    const bottom = Math.max(reached.length ? Math.min(...reached) : top * 1e-3, top * 1e-6);
    const ratio = top / bottom;
    const {
      values,
      axes: [u, v],
    } = eigen(hessian);
    const contours = chart.layer("contours");
    const levels = [];
    for (let k = 0; k < LEVELS; k += 1) {
      const level = top / ratio ** (k / (LEVELS - 1));
      levels.push(level);
      // d·(H d)/2 = level along each eigenvector at radius sqrt(2 level / eigenvalue).
      const [r1, r2] = values.map((lambda) => Math.sqrt((2 * level) / lambda));
      const outline = [];
      for (let i = 0; i < 360; i += 1) {
        const t = (i / 360) * 2 * Math.PI;
        const [a, b] = [r1 * Math.cos(t), r2 * Math.sin(t)];
        outline.push([x(optimum[0] + a * u[0] + b * v[0]), y(optimum[1] + a * u[1] + b * v[1])]);
      }
      const ring = svg("polygon", { points: points(outline), class: "contour" }, contours);
      ring.setAttribute("stroke-opacity", (0.3 + (0.7 * k) / (LEVELS - 1)).toFixed(2));
      tooltip(ring, `J = ${(minCost + level).toPrecision(5)}`);
    }

    const trail = chart.layer("descent");
    const screen = path.map(([s, g]) => [x(s), y(g)]);
    if (screen.length > 1) svg("polyline", { points: points(screen), class: "path-line" }, trail);
    if (screen.length <= 200) {
      for (const [px, py] of screen)
        svg("circle", { cx: round(px), cy: round(py), r: 2.2, class: "path-dot" }, trail);
    }
    if (path.length) {
      const [sx, sy] = screen[0];
      tooltip(
        svg("circle", { cx: round(sx), cy: round(sy), r: 5, class: "path-start" }, trail),
        `first iterate: silver ${money(path[0][0])}, gold ${money(path[0][1])}/ct`,
      );
      const last = path[path.length - 1];
      const [ex, ey] = screen[screen.length - 1];
      tooltip(
        svg("circle", { cx: round(ex), cy: round(ey), r: 4, class: "path-end" }, trail),
        `last iterate: silver ${money(last[0])}, gold ${money(last[1])}/ct`,
      );
    }
    const [ox, oy] = [round(x(optimum[0])), round(y(optimum[1]))];
    const star = svg(
      "path",
      { d: `M${ox - 6},${oy}H${ox + 6}M${ox},${oy - 6}V${oy + 6}`, class: "optimum" },
      trail,
    );
    tooltip(
      star,
      `least-squares optimum: silver ${money(optimum[0])}, gold ${money(optimum[1])}/ct`,
    );

    legend(container, [
      [
        "swatch-contour",
        `cost J, ${LEVELS} levels from ${compactNumber(minCost + levels[LEVELS - 1])} ` +
          `to ${compactNumber(minCost + top)}`,
      ],
      ["swatch-path", `path of the two prices (${plural(path.length, "point")})`],
      ["swatch-start", "first iterate"],
      ["swatch-optimum", "least-squares optimum"],
    ]);
  });
}

// 8. A price per period with its 95% confidence interval, beside the active model's value.

const DAY = 86_400_000;

export function periodChart(container, { items, field, title, period, reference, caption }) {
  draw(container, () => {
    const height = chartHeight(container, 0.6, 220, 300);
    const when = (item) => Date.parse(`${item.period_start}T00:00:00Z`);
    const fitted = items.filter((item) => item[field] !== null);
    const bounds = fitted.flatMap((item) => {
      const interval = item[`${field}_interval`];
      return interval ? [interval.lower, interval.upper] : [item[field]];
    });
    const yDomain = niceDomain(...extent([...bounds, ...(reference === null ? [] : [reference])]));
    const half = (period === "week" ? 7 : 30) * DAY * 0.5;
    const times = items.map(when);
    const xDomain = [Math.min(...times) - half, Math.max(...times) + half];
    const yTicks = linearAxis(yDomain, height - 60, 45, { currency: true });
    const chart = frame(container, {
      height,
      label: caption,
      yTickLabels: yTicks.map((t) => t.text),
    });
    const { plot } = chart;
    const x = linear(xDomain, [plot.left, plot.right]);
    const y = linear(yDomain, [plot.bottom, plot.top]);
    const label = new Intl.DateTimeFormat(
      "en-US",
      period === "week"
        ? { month: "short", day: "numeric", timeZone: "UTC" }
        : { month: "short", year: "numeric", timeZone: "UTC" },
    );
    const stride = Math.max(1, Math.ceil((items.length * 64) / (plot.right - plot.left)));
    axes(chart, {
      x,
      y,
      xTicks: items
        .filter((_, i) => i % stride === 0)
        .map((item) => ({ value: when(item), text: label.format(when(item)) })),
      yTicks,
      xLabel: period === "week" ? "week starting (UTC)" : "month (UTC)",
      yLabel: title,
    });
    const layer = chart.layer("period-layer");
    if (reference !== null) {
      const py = round(y(reference));
      svg("line", { x1: plot.left, x2: plot.right, y1: py, y2: py, class: "reference" }, layer);
    }
    // Runs of consecutive fitted periods: an unfitted period breaks the line and the band.
    const runs = [[]];
    for (const item of items) {
      if (item[field] === null) runs.push([]);
      else runs[runs.length - 1].push(item);
    }
    for (const run of runs.filter((r) => r.length)) {
      const withInterval = run.filter((item) => item[`${field}_interval`]);
      if (withInterval.length > 1) {
        const upper = withInterval.map((item) => [
          x(when(item)),
          y(item[`${field}_interval`].upper),
        ]);
        const lower = withInterval
          .map((item) => [x(when(item)), y(item[`${field}_interval`].lower)])
          .reverse();
        svg("polygon", { points: points([...upper, ...lower]), class: `ci-band ${field}` }, layer);
      }
      if (run.length > 1)
        svg(
          "polyline",
          {
            points: points(run.map((item) => [x(when(item)), y(item[field])])),
            class: `price-line ${field}`,
          },
          layer,
        );
    }
    for (const item of items) {
      const px = round(x(when(item)));
      const interval = item[`${field}_interval`];
      const day = new Date(when(item)).toISOString().slice(0, 10);
      if (item[field] === null) {
        const mark = svg(
          "text",
          { x: px, y: plot.bottom - 6, class: "unfitted", "text-anchor": "middle" },
          layer,
        );
        mark.textContent = "×";
        tooltip(mark, `${day}: ${plural(item.n_samples, "sale")}, too few to fit`);
        continue;
      }
      if (interval) {
        svg(
          "line",
          {
            x1: px,
            x2: px,
            y1: round(y(interval.lower)),
            y2: round(y(interval.upper)),
            class: `whisker ${field}`,
          },
          layer,
        );
      }
      const dot = svg(
        "circle",
        { cx: px, cy: round(y(item[field])), r: 3.5, class: `price-dot ${field}` },
        layer,
      );
      const spread = interval ? ` (95% CI ${moneyRange(interval.lower, interval.upper)})` : "";
      tooltip(dot, `${day}: ${money(item[field])}${spread}, ${plural(item.n_samples, "sale")}`);
    }
    legend(container, [
      [`swatch-${field}`, "fitted on the period's sales"],
      [`swatch-ci-${field}`, "95% confidence interval"],
      ...(reference === null ? [] : [["swatch-reference", `active model: ${money(reference)}`]]),
    ]);
  });
}

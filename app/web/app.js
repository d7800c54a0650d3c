// The dashboard: reads the public API as any client does and draws what it answers.

import { api, apiKey, ApiError, Unreachable } from "./api.js";
import {
  costChart,
  descentChart,
  niceDomain,
  periodChart,
  placeholder,
  salesChart,
} from "./charts.js";
import { DASH, count, dateTime, fixed, money, moneyRange, plural } from "./format.js";

const $ = (id) => document.getElementById(id);

const SAMPLE_SIZE = 1000; // sales drawn in the scatter, whatever the total
const BAND_POINTS = 40; // quotes that trace the model's line and band
const PAGE_SIZE = 20; // registry rows per page
const MIN_CARATS = 0.001;

const state = {
  models: [], // the registry pages loaded so far, newest first
  nextCursor: null,
  prices: null, // GET /prices, or null when no model is active
  stores: null, // GET /stores for an admin key; null otherwise
  keyIsAdmin: null, // unknown until /stores answers
  keyRefused: false,
  storeId: "",
  period: "month",
  chartVersion: null, // the version whose training the last two charts show
};

// Small helpers for the DOM.

function text(id, value) {
  $(id).textContent = value;
}

function element(tag, { className, text: content, attrs = {} } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (content !== undefined) node.textContent = content;
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

function say(target, message, tone = "info") {
  target.replaceChildren(element("p", { className: `message ${tone}`, text: message }));
}

/** Reads that fail with an error status come back as {error}; no answer at all throws. */
async function read(path, options) {
  try {
    return { data: await api(path, options) };
  } catch (error) {
    if (error instanceof ApiError) return { error };
    throw error;
  }
}

/** An event handler whose reads may find the service gone: that shows the banner. */
function guarded(handler) {
  return async (...args) => {
    try {
      await handler(...args);
    } catch (error) {
      if (!(error instanceof Unreachable)) throw error;
      showUnreachable(error);
    }
  };
}

// Loading everything.

let loads = 0; // a newer load supersedes an older one still in flight

async function refresh() {
  const load_ = (loads += 1);
  const stale = () => load_ !== loads;
  $("main").setAttribute("aria-busy", "true");
  try {
    await load(stale);
    if (!stale()) $("banner").hidden = true;
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    showUnreachable(error);
  } finally {
    if (!stale()) $("main").setAttribute("aria-busy", "false");
  }
}

function showUnreachable(error) {
  text(
    "banner-text",
    `The service is unreachable: ${error.message}. What is shown may be out of date.`,
  );
  $("banner").hidden = false;
}

async function load(stale) {
  const key = apiKey.get();
  if (key && state.keyIsAdmin === null) await learnKeyRole();
  const store = state.storeId ? `store_id=${state.storeId}` : "";
  const [prices, active, page, history, sample] = await Promise.all([
    read("/api/v1/prices"),
    read("/api/v1/models/active"),
    read(`/api/v1/models?limit=${PAGE_SIZE}`),
    read(`/api/v1/prices/history?period=${state.period}${store && `&${store}`}`),
    key ? read(`/api/v1/sales/sample?size=${SAMPLE_SIZE}${store && `&${store}`}`) : null,
  ]);
  if (stale()) return;
  state.prices = prices.data ?? null;
  if (page.data) {
    state.models = page.data.items;
    state.nextCursor = page.data.next_cursor;
  }
  renderKey();
  renderGlance(prices, active);
  renderRegistry(page.error);
  renderHistory(history);
  await Promise.all([renderSales(sample, stale), renderTraining(stale)]);
}

async function learnKeyRole() {
  const stores = await read("/api/v1/stores");
  state.keyIsAdmin = Boolean(stores.data);
  state.keyRefused = stores.error?.status === 401;
  state.stores = stores.data?.items ?? null;
  renderStores();
}

// 1. The active model at a glance.

function renderGlance(prices, active) {
  const problem = prices.error;
  $("no-model").hidden = !problem;
  $("glance-cards").hidden = Boolean(problem);
  if (problem) {
    const [title, hint] =
      problem.status === 409
        ? ["No model yet.", "Once stores have sent sales, train one with the form below."]
        : ["The prices could not be read.", ""];
    $("no-model").replaceChildren(
      element("strong", { text: title }),
      ` The service says: “${problem.message}”. ${hint}`,
    );
    return;
  }
  const p = prices.data;
  text("silver-price", money(p.silver_price));
  text("silver-interval", interval(p.silver_price_interval));
  text("gold-price", money(p.gold_price_per_carat));
  text("gold-interval", interval(p.gold_price_per_carat_interval));
  text("model-version", `v${p.model_version}`);
  text("model-trained", dateTime(p.trained_at));
  text("model-sales", count(p.n_samples));
  const model = active.data;
  // /prices and /models/active are two reads: show the fit only when both describe one version.
  const same = model && model.version === p.model_version;
  text("fit-r2", same ? fixed(model.metrics.r2, 4) : DASH);
  text("fit-rmse", same ? money(model.metrics.rmse) : DASH);
  const live = same ? model.live : null;
  text("live-rmse", live?.rmse != null ? money(live.rmse) : DASH);
  text(
    "live-detail",
    !live
      ? DASH
      : live.n_sales
        ? `RMSE on ${plural(live.n_sales, "sale")} since training; bias ${money(live.bias)}`
        : "no sales since training",
  );
}

function interval(estimate) {
  return estimate ? moneyRange(estimate.lower, estimate.upper) : DASH;
}

// 2. Sales against carats, with the active model's line and band.

async function renderSales(sample, stale) {
  const chart = $("sales-chart");
  const note = $("sales-note");
  note.textContent = "";
  if (sample === null) {
    placeholder(
      chart,
      "Sales are private to their stores: enter the admin key, or a store's key, to plot them.",
    );
    return;
  }
  if (sample.error) {
    placeholder(chart, `The sales could not be read: ${sample.error.message}`);
    return;
  }
  const { n_sales: total, items } = sample.data;
  if (total === 0) {
    placeholder(
      chart,
      state.storeId
        ? "This store has no sales yet."
        : "No sales yet: stores send them with POST /api/v1/sales, /sales/batch or a CSV import.",
    );
    return;
  }
  const quotes = state.prices ? await band(items) : null;
  if (stale()) return;
  const version = quotes?.model_version ?? null;
  salesChart(chart, {
    sales: items,
    quotes: quotes?.predictions ?? null,
    version,
    caption:
      `Scatter plot of ${plural(items.length, "sale")}, price against carats` +
      (version ? `, with model version ${version}'s line and 95% prediction band` : ""),
  });
  note.textContent =
    (items.length < total
      ? `A uniform sample of ${count(items.length)} of ${count(total)} sales.`
      : `All ${plural(total, "sale")}.`) +
    (quotes
      ? " The line and band are the service's own quotes, from POST /api/v1/predict."
      : " No model yet: train one to draw its line.");
}

/** Quotes across the chart's carat range: the line and the 95% band, as the API prices them. */
async function band(sales) {
  const [, high] = niceDomain(0, Math.max(...sales.map((s) => s.carats)));
  const carats = Array.from({ length: BAND_POINTS }, (_, i) =>
    Number((MIN_CARATS + ((high - MIN_CARATS) * i) / (BAND_POINTS - 1)).toFixed(3)),
  );
  const quotes = await read("/api/v1/predict", { method: "POST", body: { carats } });
  return quotes.data ?? null;
}

function renderStores() {
  const select = $("store-filter");
  const boxes = $("train-stores");
  $("store-control").hidden = !state.stores;
  boxes.hidden = !state.stores;
  select.replaceChildren(element("option", { text: "All stores", attrs: { value: "" } }));
  boxes.replaceChildren(element("legend", { text: "Stores (none ticked: all)" }));
  for (const store of state.stores ?? []) {
    select.append(element("option", { text: store.name, attrs: { value: String(store.id) } }));
    const id = `train-store-${store.id}`;
    boxes.append(
      element("div", { className: "check" }, [
        element("input", {
          attrs: { type: "checkbox", id, name: "store_ids", value: String(store.id) },
        }),
        element("label", { text: store.name, attrs: { for: id } }),
      ]),
    );
  }
  select.value = state.storeId;
}

// 5. The quote form.

async function quote(event) {
  event.preventDefault();
  const result = $("quote-result");
  const carats = $("quote-carats").value;
  const answer = await read(`/api/v1/predict?carats=${encodeURIComponent(carats)}`);
  if (answer.error) {
    say(result, answer.error.message, "error");
    return;
  }
  const q = answer.data;
  result.replaceChildren(
    element("p", { className: "quote-price", text: money(q.price), attrs: { id: "quote-price" } }),
    element("p", {
      className: "detail",
      text: q.interval
        ? `95% prediction interval ${moneyRange(q.interval.lower, q.interval.upper)}`
        : "no interval: the model was fitted on fewer than 3 sales",
      attrs: { id: "quote-interval" },
    }),
    element("p", {
      className: "detail",
      text: `${q.carats} carats, model version ${q.model_version}`,
    }),
  );
}

// 6. The registry, with activate and delete, and the train form.

function renderRegistry(error) {
  const body = $("registry-rows");
  body.replaceChildren();
  $("registry-more").hidden = !state.nextCursor;
  if (error) {
    say($("registry-status"), `The registry could not be read: ${error.message}`, "error");
    return;
  }
  if (!state.models.length) {
    body.append(
      element("tr", {}, [
        element("td", {
          className: "empty-row",
          text: "No versions yet: train one.",
          attrs: { colspan: "10" },
        }),
      ]),
    );
  }
  for (const model of state.models) body.append(registryRow(model));
}

function registryRow(model) {
  const live =
    model.live.rmse === null
      ? "no sales since"
      : `${money(model.live.rmse)} on ${count(model.live.n_sales)}, bias ${money(model.live.bias)}`;
  const cell = (label, content) => element("td", { attrs: { "data-label": label } }, [content]);
  const versionCell = element("th", { attrs: { scope: "row", "data-label": "Version" } }, [
    `v${model.version}`,
  ]);
  if (model.active)
    versionCell.append(" ", element("span", { className: "badge active", text: "active" }));
  if (model.status === "not_converged") {
    versionCell.append(" ", element("span", { className: "badge warn", text: "not converged" }));
  }
  const activate = element("button", {
    className: "secondary small",
    text: "Activate",
    attrs: { type: "button", "aria-label": `Activate version ${model.version}` },
  });
  activate.disabled = model.active || model.status === "not_converged";
  activate.addEventListener("click", () =>
    asAdmin($("registry-status"), `Version ${model.version} was not activated`, async () => {
      await api(`/api/v1/models/${model.version}/activate`, { method: "POST" });
      say($("registry-status"), `Version ${model.version} is active now.`, "success");
      state.chartVersion = model.version;
    }),
  );
  const remove = element("button", {
    className: "danger small",
    text: "Delete",
    attrs: { type: "button", "aria-label": `Delete version ${model.version}` },
  });
  remove.disabled = model.active;
  remove.addEventListener("click", () => {
    if (!confirm(`Delete model version ${model.version}? This cannot be undone.`)) return;
    asAdmin($("registry-status"), `Version ${model.version} was not deleted`, async () => {
      await api(`/api/v1/models/${model.version}`, { method: "DELETE" });
      say($("registry-status"), `Version ${model.version} was deleted.`, "success");
    });
  });
  const rate = model.parameters.learning_rate;
  const row = element("tr", { attrs: { "data-version": String(model.version) } }, [
    versionCell,
    cell("Trained", dateTime(model.trained_at)),
    cell("Method", model.parameters.method ?? DASH),
    cell("Learning rate", typeof rate === "number" ? String(rate) : (rate ?? DASH)),
    cell("Iterations", count(model.iterations)),
    cell("Converged", model.converged ? "yes" : "no"),
    cell("RMSE", money(model.metrics.rmse)),
    cell("R²", fixed(model.metrics.r2, 4)),
    cell("Live error", live),
    element("td", { className: "actions" }, [activate, remove]),
  ]);
  row.classList.toggle("is-active", model.active);
  return row;
}

async function olderVersions() {
  const page = await read(`/api/v1/models?limit=${PAGE_SIZE}&cursor=${state.nextCursor}`);
  if (page.error) {
    say($("registry-status"), page.error.message, "error");
    return;
  }
  state.models.push(...page.data.items);
  state.nextCursor = page.data.next_cursor;
  renderRegistry();
  renderVersionChoice();
}

/** Runs an admin action, asking for the key first when there is none; refreshes after.
 * A refusal is shown in `status`, after `failure` (what did not happen). */
async function asAdmin(status, failure, action) {
  if (!apiKey.get() && !(await askForKey("This action needs the admin key."))) return;
  try {
    await action();
  } catch (error) {
    if (error instanceof Unreachable) return showUnreachable(error);
    if (!(error instanceof ApiError)) throw error;
    const refused = error.status === 401 || error.status === 403;
    const why = refused ? `the key was refused (${error.message})` : error.message;
    say(status, `${failure}: ${why}`, "error");
    if (error.status === 409) await refresh(); // the registry changed under us
    return;
  }
  await refresh();
}

function trainingBody() {
  const form = $("train-form");
  const body = {
    method: form.elements.method.value,
    feature_scaling: form.elements.feature_scaling.checked,
    activate: form.elements.activate.checked,
  };
  const rate = form.elements.learning_rate.value.trim();
  body.learning_rate =
    rate === "auto" || rate === "" ? "auto" : Number.isFinite(Number(rate)) ? Number(rate) : rate;
  for (const name of ["max_iterations", "tolerance", "batch_size", "epochs", "random_seed"]) {
    const value = form.elements[name].value;
    if (value !== "") body[name] = Number(value);
  }
  for (const name of ["sold_since", "sold_until"]) {
    const day = form.elements[name].value;
    if (day) body[name] = `${day}T00:00:00Z`;
  }
  const stores = [...form.querySelectorAll("input[name=store_ids]:checked")].map((box) =>
    Number(box.value),
  );
  if (stores.length) body.store_ids = stores;
  return body;
}

async function train(event) {
  event.preventDefault();
  const result = $("train-result");
  const submit = $("train-submit");
  submit.disabled = true;
  try {
    await asAdmin(result, "Training failed", async () => {
      say(result, "Training…");
      const model = await api("/api/v1/train", { method: "POST", body: trainingBody() });
      state.chartVersion = model.version;
      say(result, trainedMessage(model), model.status === "not_converged" ? "warn" : "success");
    });
  } finally {
    submit.disabled = false;
  }
  offerStableRate(result);
}

function trainedMessage(model) {
  const how =
    model.status === "converged"
      ? `converged in ${plural(model.iterations, "iteration")}`
      : model.status === "completed"
        ? `ran its ${plural(model.iterations, "iteration")}`
        : `did not converge in ${plural(model.iterations, "iteration")}, so it was not activated`;
  return (
    `Version ${model.version} trained on ${plural(model.n_samples, "sale")}: ${how}. ` +
    `Silver ${money(model.silver_price)}, gold ${money(model.gold_price_per_carat)} per carat` +
    (model.active ? "; it is active now." : "; the active version is unchanged.")
  );
}

/** A refused, diverging rate names one that works: offer it as a button. */
function offerStableRate(result) {
  const found = result.textContent.match(/use ([0-9.eE+-]+) or 'auto'/);
  if (!found) return;
  const button = element("button", {
    className: "secondary small",
    text: `Use ${found[1]}`,
    attrs: { type: "button" },
  });
  button.addEventListener("click", () => {
    $("train-rate").value = found[1];
    $("train-submit").focus();
  });
  result.append(button);
}

// 3 and 4. How the chosen version was trained: cost by iteration, and the descent.

function renderVersionChoice() {
  const select = $("chart-version");
  const versions = state.models.map((m) => m.version);
  if (!versions.includes(state.chartVersion)) {
    state.chartVersion = state.prices?.model_version ?? versions[0] ?? null;
  }
  select.replaceChildren(
    ...state.models.map((m) =>
      element("option", {
        text: `v${m.version} · ${m.parameters.method ?? "batch"}${m.active ? " (active)" : ""}`,
        attrs: { value: String(m.version) },
      }),
    ),
  );
  select.closest(".controls").hidden = !versions.length;
  if (state.chartVersion !== null) select.value = String(state.chartVersion);
}

async function renderTraining(stale = () => false) {
  renderVersionChoice();
  const note = $("training-note");
  note.textContent = "";
  const version = state.chartVersion;
  if (version === null) {
    placeholder($("cost-chart"), "No model trained yet.");
    placeholder($("descent-chart"), "No model trained yet.");
    return;
  }
  const history = await read(`/api/v1/models/${version}/cost-history`);
  if (stale()) return;
  if (history.error) {
    placeholder($("cost-chart"), history.error.message);
    placeholder($("descent-chart"), history.error.message);
    return;
  }
  const { iterations, cost, path, surface } = history.data;
  const model = state.models.find((m) => m.version === version);
  costChart($("cost-chart"), {
    iterations,
    cost,
    minCost: surface?.min_cost ?? null,
    caption: `Cost J of version ${version} against iteration, log scale`,
  });
  if (!surface) {
    placeholder($("descent-chart"), "This version was stored without its cost surface.");
    return;
  }
  const errors = model?.metrics ?? {};
  descentChart($("descent-chart"), {
    path,
    surface,
    // Where the path is a single point, show the prices' own uncertainty around it.
    spread: [3 * (errors.silver_std_error || 1), 3 * (errors.gold_std_error || 1)],
    caption:
      "Contours of the cost over silver price and gold price per carat, " +
      `with the path version ${version} took`,
  });
  note.textContent = descentNote(model, iterations.length);
}

function descentNote(model, points) {
  if (!model) return "";
  const scaled = model.parameters.feature_scaling;
  if (model.iterations <= 1) {
    return (
      `Version ${model.version} reached the optimum in one step: with the feature scaled and ` +
      "the step size taken from the exact Hessian, the cost's valley is round. Train with " +
      "“Scale the feature” off and a fixed learning rate to watch the descent zig-zag down " +
      "a narrow valley."
    );
  }
  const sampled =
    points < model.iterations
      ? ` (${count(points)} of its ${count(model.iterations)} iterations shown)`
      : "";
  return scaled
    ? `Version ${model.version} descended in the scaled feature space${sampled}; ` +
        "the path is drawn in dollars."
    : `Version ${model.version} descended on raw carats${sampled}: the valley of the cost ` +
        "is long and narrow, so the path zig-zags across it before it creeps along it.";
}

// 8. Prices over time.

function renderHistory(history) {
  const silver = $("history-silver");
  const gold = $("history-gold");
  const note = $("history-note");
  note.textContent = "";
  if (history.error) {
    const why = `The price history could not be read: ${history.error.message}`;
    placeholder(silver, why);
    placeholder(gold, why);
    return;
  }
  const { items, period } = history.data;
  if (!items.some((item) => item.silver_price !== null)) {
    const why = items.length
      ? `No ${period} has enough sales to fit its prices yet.`
      : "No sales yet: nothing to fit.";
    placeholder(silver, why);
    placeholder(gold, why);
    return;
  }
  const common = { items, period };
  periodChart(silver, {
    ...common,
    field: "silver_price",
    title: "silver price (USD)",
    reference: state.prices?.silver_price ?? null,
    caption: `Silver price fitted per ${period}, with 95% confidence intervals`,
  });
  periodChart(gold, {
    ...common,
    field: "gold_price_per_carat",
    title: "gold price per carat (USD)",
    reference: state.prices?.gold_price_per_carat ?? null,
    caption: `Gold price per carat fitted per ${period}, with 95% confidence intervals`,
  });
  const unfitted = items.filter((item) => item.silver_price === null).length;
  note.textContent =
    `Each point is a fit of that ${period}'s sales alone.` +
    (unfitted ? ` ${plural(unfitted, period)} had too few sales to fit (×).` : "");
}

// The key.

function renderKey() {
  const key = apiKey.get();
  const role = !key
    ? "No API key"
    : state.keyRefused
      ? "Key refused"
      : state.keyIsAdmin
        ? "Admin key"
        : "Store key";
  text("key-state", role);
  $("key-button").textContent = key ? "Change key" : "Enter API key";
  $("forget-key").hidden = !key;
}

function askForKey(reason = "") {
  const dialog = $("key-dialog");
  text("key-reason", reason);
  $("key-input").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "saved"), { once: true });
  });
}

function saveKey(event) {
  event.preventDefault();
  apiKey.set($("key-input").value.trim());
  Object.assign(state, { keyIsAdmin: null, keyRefused: false, stores: null, storeId: "" });
  renderStores();
  $("key-dialog").close("saved");
  refresh();
}

function forgetKey() {
  apiKey.clear();
  Object.assign(state, { keyIsAdmin: null, keyRefused: false, stores: null, storeId: "" });
  renderStores();
  refresh();
}

// Wiring.

function changeStore() {
  state.storeId = $("store-filter").value;
  refresh();
}

function changePeriod() {
  state.period = $("history-period").value;
  refresh();
}

function changeVersion() {
  state.chartVersion = Number($("chart-version").value);
  guarded(renderTraining)();
}

$("refresh").addEventListener("click", refresh);
$("banner-retry").addEventListener("click", refresh);
$("key-button").addEventListener("click", () => askForKey());
$("forget-key").addEventListener("click", forgetKey);
$("key-form").addEventListener("submit", saveKey);
$("key-cancel").addEventListener("click", () => $("key-dialog").close("cancelled"));
$("quote-form").addEventListener("submit", guarded(quote));
$("train-form").addEventListener("submit", train);
$("registry-more").addEventListener("click", guarded(olderVersions));
$("store-filter").addEventListener("change", changeStore);
$("history-period").addEventListener("change", changePeriod);
$("chart-version").addEventListener("change", changeVersion);

refresh();

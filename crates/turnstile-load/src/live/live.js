// Turnstile's live view: polls /api/state every second and draws each backend's timeline as
// plain SVG. No library and no network beyond this page's own server.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
const DROP_COLORS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#ff7f0e", "#17becf", "#7f7f7f"];
// Which buttons make sense for which backend (the others are disabled, with a reason).
const ONLY_FOR = { crash_actor: "actor", crash_shard: "sharded" };

let lastState = null;
const columns = new Map(); // label -> section element
// What the page has of the current run: label -> timeline (the samples accumulated, since
// each poll asks only for the samples after the last one it has).
let cache = { run: null, timelines: new Map() };

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (parent) parent.appendChild(node);
  return node;
}

// Ticks at 1, 2 or 5 × 10^k; labels without spurious decimals.
function ticks(max, count) {
  if (!(max > 0)) return { step: 1, values: [0, 1] };
  const raw = max / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || 10 * power;
  const values = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) values.push(v);
  if (values[values.length - 1] < max) values.push(values[values.length - 1] + step);
  return { step, values };
}

function formatNumber(value, step) {
  const decimals = step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step)));
  return value.toLocaleString("en-US", { maximumFractionDigits: decimals, minimumFractionDigits: decimals });
}

// One chart: lines of [t, value] points, vertical markers, the warm-up band.
function drawChart(svg, { lines, markers, tMax, warmup, integer, empty }) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = svg.clientWidth || 400;
  const height = svg.clientHeight || 130;
  const left = 44, right = 8, top = 6, bottom = 18;
  const plotW = Math.max(10, width - left - right), plotH = Math.max(10, height - top - bottom);
  const yMaxData = Math.max(0, ...lines.flatMap((l) => l.points.map((p) => p[1])));
  const y = ticks(yMaxData > 0 ? yMaxData : 1, 4);
  // Counts never get fractional ticks.
  if (integer && y.step < 1) {
    y.step = 1;
    y.values = [0, 1];
    for (let v = 2; v <= Math.ceil(yMaxData); v += 1) y.values.push(v);
  }
  const yMax = y.values[y.values.length - 1];
  const t = ticks(Math.max(tMax, 1), 6);
  const tTop = t.values[t.values.length - 1];
  const sx = (v) => left + (v / tTop) * plotW;
  const sy = (v) => top + plotH - (v / yMax) * plotH;
  el("rect", { class: "warmup", x: left, y: top, width: Math.max(0, sx(warmup) - left), height: plotH }, svg);
  for (const v of y.values) {
    el("line", { class: "grid", x1: left, x2: left + plotW, y1: sy(v), y2: sy(v) }, svg);
    const label = el("text", { x: left - 4, y: sy(v) + 3, "text-anchor": "end" }, svg);
    label.textContent = formatNumber(v, y.step);
  }
  for (const v of t.values) {
    const label = el("text", { x: sx(v), y: height - 4, "text-anchor": "middle" }, svg);
    label.textContent = formatNumber(v, t.step) + "s";
  }
  el("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotH }, svg);
  el("line", { class: "axis", x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH }, svg);
  for (const line of lines) {
    if (line.points.length === 0) continue;
    const d = line.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
    const path = el("path", { class: "line", d, stroke: line.color }, svg);
    if (line.dash) path.setAttribute("stroke-dasharray", "4 3");
  }
  if (!lines.some((line) => line.points.length > 0)) {
    const note = el("text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, svg);
    note.textContent = empty || "no data yet";
  }
  for (const marker of markers) {
    const x = sx(marker.t);
    const line = el("line", { class: "marker " + marker.cls, x1: x, x2: x, y1: top, y2: top + plotH }, svg);
    const title = el("title", {}, line);
    title.textContent = marker.t.toFixed(1) + " s: " + marker.label;
  }
}

function markerClass(kind) {
  return { scenario_fault: "fault", live_fault: "fault", restart: "restart", escalation: "escalation" }[kind] || "fault";
}

function column(label) {
  let section = columns.get(label);
  if (section) return section;
  const template = document.getElementById("backend-template");
  section = template.content.firstElementChild.cloneNode(true);
  section.dataset.backend = label;
  section.querySelector(".label").textContent = label;
  for (const button of section.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => inject(section, button.dataset.action));
  }
  document.getElementById("backends").appendChild(section);
  columns.set(label, section);
  return section;
}

function actionOf(section, kind) {
  switch (kind) {
    case "crash_shard": return { kind, shard: Number(section.querySelector(".shard").value) };
    case "poison": return { kind, key: section.querySelector(".poison-key").value };
    case "slow": return { kind, delay: section.querySelector(".slow-delay").value, duration: section.querySelector(".slow-duration").value };
    case "switch_backend": return { kind, backend: section.querySelector(".switch-to").value };
    default: return { kind };
  }
}

async function inject(section, kind) {
  const feedback = section.querySelector(".feedback");
  feedback.className = "feedback";
  feedback.textContent = "sending " + kind + "…";
  try {
    const response = await fetch("/api/inject", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ backend: section.dataset.backend, action: actionOf(section, kind) }),
    });
    const body = await response.json();
    if (response.ok) {
      feedback.textContent = body.label + " at " + (body.t_ms / 1000).toFixed(1) + " s: " + body.detail;
    } else {
      feedback.className = "feedback error";
      feedback.textContent = body.message;
    }
  } catch (error) {
    feedback.className = "feedback error";
    feedback.textContent = "the live server did not answer: " + error;
  }
  poll(false);
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function renderBackend(backend, tMax, running) {
  const section = column(backend.label);
  const timeline = backend.timeline;
  const samples = timeline.samples;
  const last = samples[samples.length - 1];
  const gateway = [...samples].reverse().map((s) => s.gateway).find((g) => g) || null;
  section.querySelector(".kind").textContent = gateway ? gateway.backend : "";
  const state = section.querySelector(".state");
  state.textContent = gateway ? gateway.state : "";
  state.className = "state " + (gateway ? gateway.state : "");
  const ended = section.querySelector(".ended");
  ended.hidden = !timeline.ended;
  ended.textContent = timeline.ended ? "Series stopped: " + timeline.ended : "";
  section.querySelector(".rates").textContent = last
    ? fmt(last.offered === null ? last.sent : last.offered, 0) + " / " + fmt(last.answered, 0) + " per s"
      + (last.offered !== null && last.sent < 0.95 * last.offered ? " (only " + fmt(last.sent, 0) + " sent: every connection is waiting)" : "")
    : "–";
  section.querySelector(".latency").textContent = last ? fmt(last.p50_ms, 2) + " / " + fmt(last.p99_ms, 2) + " ms" : "–";
  section.querySelector(".mailbox").textContent = gateway && gateway.mailbox_depth !== null
    ? gateway.mailbox_depth + (gateway.backend === "sharded" ? " (shard " + gateway.busiest_child + ")" : "")
    : "–";
  section.querySelector(".supervision").textContent = gateway ? gateway.restarts + " / " + gateway.escalations : "–";

  const totals = {};
  for (const sample of samples) {
    for (const [reason, count] of Object.entries(sample.outcomes.dropped)) totals[reason] = (totals[reason] || 0) + count;
  }
  const reasons = Object.keys(totals).sort();
  const drops = section.querySelector(".drops");
  drops.replaceChildren();
  if (reasons.length === 0) {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = "none";
    drops.appendChild(none);
  }
  const keys = section.querySelector(".drop-keys");
  keys.replaceChildren();
  reasons.forEach((reason, i) => {
    const item = document.createElement("li");
    item.dataset.drop = reason;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = totals[reason];
    item.append(count, " " + reason);
    drops.appendChild(item);
    const key = document.createElement("span");
    key.className = "key";
    key.style.color = DROP_COLORS[i % DROP_COLORS.length];
    key.textContent = reason + " ";
    keys.appendChild(key);
  });

  const usable = running && backend.admin && !timeline.ended;
  for (const button of section.querySelectorAll("button[data-action]")) {
    const only = ONLY_FOR[button.dataset.action];
    const fits = !only || !gateway || gateway.backend === only;
    button.disabled = !usable || !fits;
    button.title = !backend.admin ? "no admin API for this gateway"
      : !running ? "no run in progress"
      : timeline.ended ? "this gateway stopped answering"
      : !fits ? "only for the " + only + " backend" : "";
  }

  const markers = timeline.events.map((e) => ({
    t: e.t_ms / 1000,
    cls: markerClass(e.kind) + (e.ok ? "" : " refused"),
    label: e.label + (e.ok ? "" : " (refused)"),
  }));
  const common = { markers, tMax, warmup: timeline.warmup_seconds };
  const series = (f) => samples.filter((s) => f(s) !== null && f(s) !== undefined).map((s) => [s.t, f(s)]);
  drawChart(section.querySelector(".chart.rate"), { ...common, lines: [
    // Closed loop offers whatever the answers allow: what was sent stands in for it.
    { color: "#999", dash: true, points: series((s) => (s.offered === null ? s.sent : s.offered)) },
    { color: "#1f77b4", points: series((s) => s.answered) },
  ] });
  drawChart(section.querySelector(".chart.latency"), { ...common, lines: [
    { color: "#2ca02c", points: series((s) => s.p50_ms) },
    { color: "#d62728", points: series((s) => s.p99_ms) },
  ] });
  drawChart(section.querySelector(".chart.mailbox"), { ...common, integer: true,
    empty: gateway ? "no actors in this backend" : "no figures from the gateway's admin API", lines: [
    { color: "#1f77b4", points: series((s) => (s.gateway ? s.gateway.mailbox_depth : null)) },
  ] });
  drawChart(section.querySelector(".chart.dropped"), { ...common, integer: true, empty: "nothing dropped", lines: reasons.map((reason, i) => ({
    color: DROP_COLORS[i % DROP_COLORS.length],
    points: samples.map((s, i) => [s.t, (s.outcomes.dropped[reason] || 0) / sampleSeconds(samples, i)]),
  })) });

  const events = section.querySelector(".events");
  events.replaceChildren();
  for (const event of timeline.events) {
    const item = document.createElement("li");
    item.dataset.kind = event.kind;
    if (!event.ok) item.className = "failed";
    item.textContent = (event.t_ms / 1000).toFixed(1) + " s " + event.label + (event.ok ? "" : " (refused)") + ": " + event.detail;
    events.appendChild(item);
  }
}

// The length of sample `index`'s interval (the last may be shorter than a second).
function sampleSeconds(samples, index) {
  const before = index > 0 ? samples[index - 1].t : 0;
  return Math.max(1e-3, samples[index].t - before);
}

function render(state) {
  document.getElementById("scenario-name").textContent = state.scenario.name;
  document.getElementById("scenario-description").textContent = state.scenario.description;
  const status = document.getElementById("run-status");
  status.textContent = "run " + state.run + ": " + state.status;
  status.className = "status " + state.status;
  document.getElementById("run-message").textContent = state.message || "";
  document.getElementById("run-again").disabled = !(state.status === "finished" || state.status === "failed");
  if (lastState && lastState.run !== state.run) {
    columns.forEach((section) => section.remove());
    columns.clear();
  }
  const tMax = Math.max(1, ...state.backends.map((b) => {
    const s = b.timeline.samples;
    return s.length ? s[s.length - 1].t : 0;
  }));
  for (const backend of state.backends) renderBackend(backend, tMax, state.status === "running");
  lastState = state;
}

// The latest time every backend's cached series reaches (the samples after it are asked for).
function cachedUpTo() {
  if (cache.timelines.size === 0) return null;
  let upTo = Infinity;
  for (const timeline of cache.timelines.values()) {
    // An ended series gets no more samples: it must not hold the others back.
    if (timeline.ended) continue;
    const samples = timeline.samples;
    upTo = Math.min(upTo, samples.length ? samples[samples.length - 1].t : 0);
  }
  return upTo === Infinity || upTo === 0 ? null : upTo;
}

// Adds the state's (partial) timelines to the cache; gives the state with whole timelines, or
// null when the answer belongs to another run than the cache (then the cache starts over).
function merge(state) {
  if (state.run !== cache.run) {
    cache = { run: state.run, timelines: new Map() };
    if (state.since !== null) return null;
  }
  for (const backend of state.backends) {
    const known = cache.timelines.get(backend.label);
    if (!known) {
      cache.timelines.set(backend.label, backend.timeline);
      continue;
    }
    const last = known.samples.length ? known.samples[known.samples.length - 1].t : -1;
    for (const sample of backend.timeline.samples) if (sample.t > last) known.samples.push(sample);
    known.events = backend.timeline.events;
    known.ended = backend.timeline.ended;
    known.warmup_seconds = backend.timeline.warmup_seconds;
  }
  return { ...state, backends: state.backends.map((b) => ({ ...b, timeline: cache.timelines.get(b.label) })) };
}

async function poll(again) {
  const problem = document.getElementById("connection");
  try {
    const upTo = cachedUpTo();
    const url = upTo === null ? "/api/state" : "/api/state?since=" + upTo;
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const whole = merge(await response.json());
    if (whole === null) {
      // A new run: fetch it from its start.
      if (again) setTimeout(() => poll(true), 0);
      return;
    }
    render(whole);
    problem.hidden = true;
  } catch (error) {
    problem.hidden = false;
    problem.textContent = "The live server stopped answering (" + error.message + "); showing the last data received.";
  }
  if (again) setTimeout(() => poll(true), POLL_MS);
}

document.getElementById("run-again").addEventListener("click", async () => {
  const response = await fetch("/api/runs", { method: "POST" });
  if (!response.ok) {
    const body = await response.json();
    document.getElementById("run-message").textContent = body.message;
  }
  poll(false);
});

poll(true);

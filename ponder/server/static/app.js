// The ponder web page: ask a question, watch the run's events, draw the evidence.
// Talks to the server it came from: GET /health, GET /v1/models, POST /ponder/runs (SSE).
"use strict";

const $ = (id) => document.getElementById(id);
let controller = null;
let models = {};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || localStorage.getItem("ponder-api-key") || "";
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "number" && !Number.isInteger(x)) return x.toFixed(digits);
  return String(x);
}

async function init() {
  try {
    const health = await (await fetch("/health")).json();
    $("server").textContent =
      `model ${health.model || "?"} · engine ${health.engine} · ` +
      `budget ≤ ${health.limits.max_budget} · max tokens ≤ ${health.limits.max_tokens}`;
    $("budget").max = health.limits.max_budget;
    $("budget").value = Math.min(health.defaults.budget, health.limits.max_budget);
    $("max-tokens").max = health.limits.max_tokens;
    $("max-tokens").value = Math.min(256, health.limits.max_tokens);
    $("key-row").hidden = !health.auth_required;
    for (const s of health.scorers) {
      $("scorer").append(el("option", { value: s.name, title: s.summary }, s.name));
    }
    $("api-key").value = localStorage.getItem("ponder-api-key") || "";
    await loadModels(health.defaults.strategy);
  } catch (err) {
    setStatus("could not reach the server: " + err, true);
  }
}

async function loadModels(preferred) {
  const resp = await fetch("/v1/models", { headers: headers() });
  const body = await resp.json();
  if (!resp.ok) {
    setStatus(body.error ? body.error.message : "could not list strategies", true);
    return;
  }
  const select = $("strategy");
  select.replaceChildren();
  models = {};
  for (const m of body.data) {
    const name = m.ponder.strategy;
    if (name in models) continue; // the served model's name and "ponder" repeat the default
    models[name] = m.ponder;
    select.append(el("option", { value: name }, name));
  }
  if (preferred in models) select.value = preferred;
  describeStrategy();
}

function describeStrategy() {
  const m = models[$("strategy").value];
  $("about").textContent = m ? `${m.summary} — budget = ${m.budget_means}` : "";
}

function resetView() {
  for (const id of ["answer-panel", "dist-panel", "usage-panel", "tree-panel",
    "rounds-panel", "candidates-panel"]) {
    $(id).hidden = true;
  }
  $("live").replaceChildren();
  $("live-panel").hidden = true;
  $("live-details").open = true;
  $("live-count").textContent = "";
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  if ($("api-key").value) localStorage.setItem("ponder-api-key", $("api-key").value);
  resetView();
  const strategy = $("strategy").value;
  const budget = parseInt($("budget").value, 10);
  const body = {
    model: `ponder/${strategy}@${budget}`,
    messages: [{ role: "user", content: question }],
    max_tokens: parseInt($("max-tokens").value, 10),
  };
  body.ponder = {};
  if ($("scorer").value) body.ponder.scorer = $("scorer").value;
  if ($("config").value.trim()) {
    try {
      body.ponder.config = JSON.parse($("config").value);
    } catch (err) {
      setStatus("settings must be a JSON object: " + err.message, true);
      return;
    }
  }
  controller = new AbortController();
  $("go").disabled = true;
  $("stop").disabled = false;
  setStatus(`asking ${strategy} with budget ${budget}…`);
  try {
    const resp = await fetch("/ponder/runs", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({}));
      setStatus(`${resp.status}: ${err.error ? err.error.message : resp.statusText}`, true);
      return;
    }
    await readEvents(resp.body, handleEvent);
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped; the run was cancelled");
    else setStatus(String(err), true);
  } finally {
    $("go").disabled = false;
    $("stop").disabled = true;
    controller = null;
  }
}

// Server-sent events over fetch: blocks separated by a blank line; ":" lines are comments.
async function readEvents(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}

function handleEvent(type, ev) {
  if (type === "queued") setStatus(`run ${ev.id} queued: ${ev.strategy}, budget ${ev.budget}`);
  else if (type === "started") setStatus("generating…");
  else if (type === "batch") showBatch(ev);
  else if (type === "result") showResult(ev);
  else if (type === "error") setStatus(`error: ${ev.error.message}`, true);
  else if (type === "cancelled") setStatus("the run was cancelled");
}

function showBatch(ev) {
  $("live-panel").hidden = false;
  for (const group of ev.groups) {
    for (const s of group.samples) {
      const head = el("div", { class: "card-head" },
        el("span", {}, "batch ", el("b", {}, ev.index + 1)),
        el("span", {}, el("b", {}, s.tokens), " tokens"),
        el("span", {}, s.finish_reason));
      const text = el("div", { class: "text" });
      if (group.after) text.append(el("span", { class: "after" }, "…" + group.after.slice(-60)));
      text.append(s.text);
      $("live").append(el("li", { class: "card live-sample" }, head, text));
    }
  }
  const u = ev.usage;
  $("live-count").textContent = `(${ev.samples})`;
  setStatus(`generating… ${ev.samples} samples, ${u.tokens_generated} tokens generated, ` +
    `${u.prompt_tokens_cached} prompt tokens from cache`);
}

function showResult(ev) {
  const p = ev.ponder;
  $("answer-panel").hidden = false;
  $("answer").textContent = p.answer === null ? "(no answer extracted)" : p.answer;
  $("best").textContent = ev.content;
  showCandidates(p);
  showDistribution(p);
  showUsage(p.usage);
  showTrace(p.trace || {});
  $("live-details").open = false;
  setStatus(`done: ${p.strategy} with budget ${p.budget}, ${fmt(p.usage.seconds, 1)} s`);
}

function showCandidates(p) {
  const list = $("candidates");
  list.replaceChildren();
  // Several samples may share the chosen text; mark one of them, the first.
  const chosenAt = p.best ? p.candidates.findIndex((c) => c.text === p.best.text) : -1;
  p.candidates.forEach((c, i) => {
    const chosen = i === chosenAt;
    const head = el("div", { class: "card-head" },
      el("span", {}, "#", i),
      el("span", {}, "answer ", el("b", { class: "cand-answer" }, c.answer === null ? "–" : c.answer)),
      el("span", {}, "votes ", el("b", {}, c.votes)),
      el("span", {}, "score ", el("b", {}, fmt(c.score))),
      el("span", {}, el("b", {}, c.tokens), " tokens"),
      chosen ? el("span", { class: "answer" }, "chosen") : null);
    list.append(el("li", { class: chosen ? "card candidate chosen" : "card candidate" },
      head, el("div", { class: "text" }, c.text)));
  });
  $("candidate-count").textContent = `(${p.candidates.length})`;
  $("candidates-panel").hidden = p.candidates.length === 0;
}

function bars(title, rows, winner) {
  const box = el("div", {}, el("div", { class: "bars-title" }, title));
  const values = rows.map((r) => r[1]);
  const lo = Math.min(0, ...values);
  const hi = Math.max(...values);
  for (const [label, value] of rows) {
    const share = hi > lo ? (value - lo) / (hi - lo) : 1;
    box.append(el("div", { class: "bar-row" },
      el("span", { class: "bar-label", title: label }, label),
      el("div", { class: label === winner ? "bar win" : "bar",
        style: `width:${(100 * share).toFixed(1)}%` }),
      el("span", { class: "bar-value" }, fmt(value))));
  }
  return box;
}

function showDistribution(p) {
  const box = $("bars");
  box.replaceChildren();
  // The strategy's own clusters (equivalent answers together) when it reports them.
  const clusters = p.trace && p.trace.clusters && Object.keys(p.trace.clusters).length
    ? p.trace.clusters : null;
  const votes = new Map();
  if (clusters) {
    for (const [key, members] of Object.entries(clusters)) votes.set(key, members.length);
  } else {
    for (const c of p.candidates) {
      const key = c.answer === null ? "(none)" : c.answer;
      votes.set(key, (votes.get(key) || 0) + 1);
    }
  }
  const voteRows = [...votes.entries()].sort((a, b) => b[1] - a[1]);
  const winner = clusters ? p.trace.winner : p.answer;
  if (voteRows.length) box.append(bars("candidates per answer", voteRows, winner));
  const label = (c, i) => `#${i} ${c.answer ?? ""}`;
  const scored = p.candidates.map((c, i) => [label(c, i), c.score])
    .filter((r) => typeof r[1] === "number");
  if (scored.length) {
    const best = p.candidates.findIndex((c) => p.best && c.text === p.best.text);
    const winner = best >= 0 ? label(p.candidates[best], best) : null;
    box.append(bars("score per candidate", scored, winner));
  }
  $("dist-panel").hidden = box.childElementCount === 0;
}

function showUsage(u) {
  const rows = [
    ["tokens generated", u.tokens_generated],
    ["prompt tokens computed", u.prompt_tokens_computed],
    ["prompt tokens from cache", u.prompt_tokens_cached],
    ["cache hit rate", (100 * u.cache_hit_rate).toFixed(1) + " %"],
    ["engine calls", u.engine_calls],
    ["scorer calls", u.scorer_calls],
    ["seconds", fmt(u.seconds, 2)],
  ];
  $("usage").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  $("usage-panel").hidden = false;
}

function showTrace(trace) {
  if (trace.kind === "tree" && trace.nodes && trace.nodes.length) {
    const children = new Map();
    for (const n of trace.nodes) {
      const key = n.parent === null ? "root" : n.parent;
      if (!children.has(key)) children.set(key, []);
      children.get(key).push(n);
    }
    const build = (key) => {
      const ul = el("ul");
      for (const n of children.get(key) || []) {
        const cls = ["node", n.selected ? "selected" : "", n.finished ? "finished" : ""].join(" ");
        const li = el("li", { class: cls },
          el("span", { class: "score" }, fmt(n.score)),
          el("span", { class: "node-text" }, n.text.trim().slice(0, 160)));
        if (children.has(n.id)) li.append(build(n.id));
        ul.append(li);
      }
      return ul;
    };
    $("tree").replaceChildren(build("root"));
    $("tree-panel").hidden = false;
  } else if (trace.kind === "rounds" && trace.rounds) {
    $("rounds").replaceChildren(...trace.rounds.map((r) =>
      el("li", {}, el("pre", { class: "text" }, JSON.stringify(r, null, 1).slice(0, 600)))));
    $("rounds-panel").hidden = false;
  }
}

$("ask").addEventListener("submit", ask);
$("stop").addEventListener("click", () => controller && controller.abort());
$("strategy").addEventListener("change", describeStrategy);
$("api-key").addEventListener("change", () => loadModels($("strategy").value));
init();

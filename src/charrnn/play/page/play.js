"use strict";
// The play page: no framework and no build step. Every rule of the options is the server's (the
// served model's and `charrnn sample`'s): the page sends what was typed and shows the server's message.

const $ = (id) => document.getElementById(id);
const HINTS = {
  write: "One model writes from your prime.",
  compare: "Two models write from the same prime and seed, side by side.",
  learn: "The checkpoints kept while the model trained write from the same prime and seed, the earliest first.",
};
let mode = "write";
let labels = new Map();  // model id: its label in the lists
let learning = [];       // the checkpoints of the chosen model's run (watch it learn)
let maxModels = 16;
let running = null;      // the AbortController of the request in flight
let ready = null;        // settled once the settings and the models are on the page
let learningRead = null; // the reading of `learning` in progress (the latest one counts)

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${url} answered HTTP ${response.status}`);
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function fillSelect(select, entries, chosen) {
  select.replaceChildren();
  const groups = new Map();
  for (const entry of entries) {
    if (!groups.has(entry.group)) {
      const group = document.createElement("optgroup");
      group.label = entry.group;
      groups.set(entry.group, group);
      select.append(group);
    }
    groups.get(entry.group).append(new Option(entry.label, entry.id, false, entry.id === chosen));
  }
}

// The other model to compare with: the newest other registered version, else a kept checkpoint.
function secondChoice(entries, first) {
  const version = (entry) => (entry.label.match(/version (\d+)/) || [])[1];
  const firstVersion = version(entries.find((entry) => entry.id === first) || {label: ""});
  const other = entries.find((entry) => /\/\d+$/.test(entry.id) && version(entry) !== firstVersion)
    || entries.find((entry) => entry.id !== first && !entry.id.endsWith("best.pt"))
    || entries.find((entry) => entry.id !== first);
  return other ? other.id : first;
}

function setMode(chosen) {
  mode = chosen;
  document.body.dataset.mode = chosen;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.mode === chosen));
  }
  $("mode-hint").textContent = HINTS[chosen];
  if (chosen === "learn") loadLearning();
}

// At most maxModels checkpoints, spread over the run, the last one always in.
function spread(entries, count) {
  if (entries.length <= count) return entries;
  const picked = [];
  for (let i = 0; i < count; i++) picked.push(entries[Math.round(i * (entries.length - 1) / (count - 1))]);
  return picked;
}

function loadLearning() {
  learningRead = readLearning();
  return learningRead;
}

async function readLearning() {
  learning = [];
  $("learn-list").textContent = "reading the run's checkpoints…";
  await ready;
  const read = learningRead;
  try {
    const {checkpoints} = await getJSON(`/api/learning?model=${encodeURIComponent($("model-a").value)}`);
    if (read !== learningRead) return;  // another model or mode was chosen meanwhile
    learning = spread(checkpoints, maxModels);
    for (const entry of checkpoints) labels.set(entry.id, entry.label);
    $("learn-list").textContent = learning.length
      ? `${learning.length} checkpoints of this model's run, at steps ${learning.map((entry) => entry.step).join(", ")}`
      : "this model's run kept no checkpoints";
  } catch (err) {
    if (read !== learningRead) return;
    $("learn-list").textContent = "";
    showError(err.message);
  }
}

// A typed number as a number, anything else as typed: the server says what it must be.
function typed(id) {
  const text = $(id).value.trim();
  return text !== "" && !Number.isNaN(Number(text)) ? Number(text) : text;
}

function request() {
  const models = mode === "write" ? [$("model-a").value]
    : mode === "compare" ? [$("model-a").value, $("model-b").value]
    : learning.map((entry) => entry.id);
  const topK = $("top-k").value.trim();
  return {
    models, prime: $("prime").value, length: typed("length"), temperature: Number($("temperature").value),
    top_k: topK === "" ? null : typed("top-k"), top_p: typed("top-p"), seed: typed("seed"),
    precision: $("precision").value,
  };
}

function panes(start) {
  const texts = [];
  $("panes").replaceChildren();
  for (const facts of start.texts) {
    const pane = document.createElement("article");
    pane.className = "pane";
    const head = document.createElement("div");
    head.className = "pane-head";
    const name = document.createElement("b");
    name.textContent = (labels.get(facts.label) || facts.label).replace(/ \(.*\)$/, "");  // its score follows
    const bpc = facts.val_bpc == null ? "val loss unknown" : `val ${facts.val_bpc.toFixed(3)} bpc`;
    head.append(name, ` · ${facts.shape} · step ${facts.step} · ${bpc} · ${facts.precision}`);
    const text = document.createElement("pre");
    text.className = "pane-text";
    const prime = document.createElement("span");
    prime.className = "prime";
    prime.textContent = start.prime;
    const written = document.createTextNode("");
    text.append(prime, written);
    pane.append(head, text);
    $("panes").append(pane);
    texts.push(written);
  }
  return texts;
}

async function write(event) {
  event.preventDefault();
  if (running) return;  // one request at a time from a page
  running = new AbortController();
  $("write").disabled = true;
  $("stop").disabled = false;
  showError("");
  if (mode === "learn") await learningRead;
  $("status").textContent = "waiting for the model…";
  let texts = [];
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(request()),
      signal: running.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `the server answered HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const name = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (name === "start") {
          texts = panes(data);
          $("status").textContent = "writing…";
        } else if (name === "text") {
          data.texts.forEach((chunk, i) => texts[i].appendData(chunk));
        } else if (name === "done") {
          const rate = data.seconds > 0 ? Math.round(data.characters / data.seconds) : data.characters;
          $("status").textContent = `done: ${data.characters} characters in ${data.seconds} s (${rate} a second)`;
        } else if (name === "error") {
          showError(data.message);
          $("status").textContent = "";
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") {
      $("status").textContent = "stopped";
    } else {
      showError(err.message);
      $("status").textContent = "";
    }
  } finally {
    running.abort();  // whatever ended the reading, the server stops writing
    running = null;
    $("write").disabled = false;
    $("stop").disabled = true;
  }
}

async function init() {
  try {
    const settings = await getJSON("/api/settings");
    maxModels = settings.max_models;
    const defaults = settings.defaults;
    $("prime").value = defaults.prime;
    $("length").value = defaults.length;
    $("seed").value = defaults.seed;
    $("temperature").value = defaults.temperature;
    $("top-k").value = defaults.top_k ?? "";
    $("top-p").value = defaults.top_p;
    for (const precision of settings.precisions) $("precision").append(new Option(precision, precision));
    $("precision").value = defaults.precision;
    const catalogue = await getJSON("/api/models");
    const entries = [...catalogue.registered, ...catalogue.checkpoints];
    labels = new Map(entries.map((entry) => [entry.id, entry.label]));
    if (catalogue.problem) showError(catalogue.problem);
    if (!entries.length) {
      showError("No model yet: run `dvc repro` in the project, then reload this page.");
      $("write").disabled = true;
    }
    fillSelect($("model-a"), entries, entries.length ? entries[0].id : null);
    fillSelect($("model-b"), entries, secondChoice(entries, $("model-a").value));
  } catch (err) {
    showError(err.message);
  }
  $("temperature-shown").textContent = $("temperature").value;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => setMode(tab.dataset.mode));
  $("model-a").addEventListener("change", () => { if (mode === "learn") loadLearning(); });
  $("temperature").addEventListener("input", () => { $("temperature-shown").textContent = $("temperature").value; });
  $("controls").addEventListener("submit", write);
  $("stop").addEventListener("click", () => running && running.abort());
  ready = init();
  setMode("write");
});

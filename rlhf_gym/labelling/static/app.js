"use strict";
// The labelling page. Every piece of data reaches the page through textContent, never as HTML.

const params = new URLSearchParams(window.location.search);
const labeler = params.get("labeler");
const token = params.get("token");
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const KEYS = { "1": "left", "2": "right", "3": "tie", " ": "skip" };
const SAID = { left: "left is better", right: "right is better", tie: "tie", skip: "skipped" };
const byId = (id) => document.getElementById(id);

let current = null; // the pair on screen: {pair_id, prompt, left, right}
let busy = false; // one request at a time, so a double key press cannot judge twice

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, describe(data));
  return data;
}

function describe(data) {
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail) && data.detail.length > 0) return data.detail[0].msg;
  return "the request failed";
}

function setStatus(message, isError = false) {
  byId("status").textContent = message;
  byId("status").classList.toggle("error", isError);
}

function show(view) {
  for (const id of ["name-view", "pair-view", "done-view"]) byId(id).hidden = id !== view;
}

function render(data) {
  byId("progress").textContent = `${data.progress.judged} judged · ${data.progress.remaining} to go`;
  current = data.pair;
  if (current === null) {
    show("done-view");
    return;
  }
  byId("pair-id").textContent = `#${current.pair_id}`;
  for (const id of ["prompt", "left", "right"]) {
    byId(id).textContent = current[id];
    byId(id).scrollTop = 0;
  }
  show("pair-view");
}

async function loadNext() {
  render(await api("GET", `/api/next?labeler=${encodeURIComponent(labeler)}`));
}

async function run(action) {
  if (busy) return;
  busy = true;
  try {
    await action();
  } catch (error) {
    setStatus(error.message, true);
    if (error instanceof ApiError && error.status === 409) await loadNext().catch(() => {});
  } finally {
    busy = false;
  }
}

function flash(choice) {
  const button = document.querySelector(`[data-choice="${choice}"]`);
  button.classList.add("pressed");
  setTimeout(() => button.classList.remove("pressed"), 200);
}

function judge(choice) {
  if (current === null || busy) return;
  const pair = current;
  flash(choice);
  run(async () => {
    await api("POST", "/api/judge", { labeler, pair_id: pair.pair_id, choice });
    setStatus(`Saved #${pair.pair_id}: ${SAID[choice]}`);
    await loadNext();
  });
}

function undo() {
  run(async () => {
    const data = await api("POST", "/api/undo", { labeler });
    setStatus(`Undone: your judgement of #${data.undone}`);
    await loadNext();
  });
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target instanceof HTMLInputElement || !byId("name-view").hidden) return;
  if (event.key in KEYS && current !== null) {
    event.preventDefault();
    judge(KEYS[event.key]);
  } else if (event.key === "u" || event.key === "U" || event.key === "Backspace") {
    event.preventDefault();
    undo();
  }
}

function askName(message) {
  show("name-view");
  if (message) setStatus(message, true);
  byId("name-view").addEventListener("submit", (event) => {
    event.preventDefault();
    params.set("labeler", byId("name-input").value.trim());
    window.location.search = params.toString();
  });
  byId("name-input").focus();
}

function start() {
  document.addEventListener("keydown", onKey);
  for (const button of document.querySelectorAll("[data-choice]")) {
    button.addEventListener("click", () => {
      button.blur();
      judge(button.dataset.choice);
    });
  }
  byId("undo").addEventListener("click", (event) => {
    event.currentTarget.blur();
    undo();
  });
  if (labeler === null) {
    askName();
    return;
  }
  if (!NAME.test(labeler)) {
    askName("Names use letters, digits, '.', '_' and '-' (at most 64).");
    return;
  }
  byId("labeler-name").textContent = labeler;
  byId("who").hidden = false;
  run(loadNext);
}

start();

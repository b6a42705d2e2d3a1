// Operator page: talks the same WebSocket API as any frontend (same origin, /ws).
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let token = sessionStorage.getItem("dunebugger-token") || "";
let retryMs = 1000;

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.addEventListener("open", () => {
    retryMs = 1000;
    if (token) send("auth", { token });
    setConnection("connected", "up");
    send("updater.get_versions", {});
    send("updater.get_history", { limit: 20 });
  });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", (event) => {
    if (event.code === 1008) {  // the service wants a token
      setConnection("token required", "down");
      $("auth").hidden = false;
      return;
    }
    setConnection("disconnected; retrying…", "down");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  });
}

function send(subject, body) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ subject, source: "page", body }));
  }
}

function handle(message) {
  const body = message.body || {};
  switch (message.subject) {
    case "update_check_result":
    case "versions_result":
      showComponents(body.components || {});
      break;
    case "updater_progress":
      showProgress(body);
      break;
    case "update_result":
      showResult(body);
      send("updater.get_versions", {});
      send("updater.get_history", { limit: 20 });
      break;
    case "update_available":
      $("result").textContent = `${body.component} ${body.latest} is available`;
      break;
    case "update_history":
      showHistory(body.entries || []);
      break;
    case "error":
      $("result").textContent = "Error: " + body.message;
      $("result").className = "failed";
      break;
  }
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

function showComponents(components) {
  const tbody = $("components").tBodies[0];
  tbody.replaceChildren();
  let checked = "";
  for (const [name, info] of Object.entries(components)) {
    const row = tbody.insertRow();
    row.dataset.component = name;
    cell(row, name);
    cell(row, info.current);
    cell(row, info.latest);
    if (info.error) cell(row, "check failed: " + info.error, "failed");
    else if (info.update_available) cell(row, "update available", "available");
    else cell(row, info.latest ? "up to date" : (info.detail || "not checked yet"));
    cell(row, info.release_notes, "notes");
    const actions = row.insertCell();
    if (info.update_available) {
      actions.append(button("Update", () => update(name, false)), " ", button("Dry run", () => update(name, true)));
    }
    if (info.last_checked && info.last_checked > checked) checked = info.last_checked;
  }
  $("checked").textContent = checked ? "last checked " + checked.replace("T", " ") : "";
  showBundleComponents(Object.keys(components));
}

function showBundleComponents(names) {
  const select = $("bundle-component");
  const chosen = select.value;
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  if (names.includes(chosen)) select.value = chosen;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function update(component, dryRun, bundle) {
  const from = bundle ? " from bundle " + bundle : "";
  $("result").textContent = (dryRun ? "Dry run of " : "Updating ") + component + from + "…";
  $("result").className = "";
  send("updater.perform_update", bundle ? { component, dry_run: dryRun, bundle } : { component, dry_run: dryRun });
}

function updateFromBundle(dryRun) {
  const bundle = $("bundle-name").value.trim();
  if (bundle) update($("bundle-component").value, dryRun, bundle);
  else $("bundle-name").reportValidity();
}

function showProgress(p) {
  $("bar").max = p.total || 1;
  $("bar").value = p.done + 1;
  $("step").textContent = `${p.component} ${p.action}: ${p.step} — ${p.task}`;
}

function showResult(r) {
  $("result").textContent = r.message;
  $("result").className = r.success ? "" : "failed";
}

function showHistory(entries) {
  const tbody = $("history").tBodies[0];
  tbody.replaceChildren();
  for (const e of entries.slice().reverse()) {
    const row = tbody.insertRow();
    for (const value of [e.finished_at, e.component, e.action, e.from_version, e.to_version, e.outcome, e.message]) {
      cell(row, value);
    }
    if (!e.success) row.className = "failed";
  }
}

function setConnection(text, state) {
  $("connection").textContent = text;
  $("connection").className = "badge " + state;
}

document.addEventListener("DOMContentLoaded", () => {
  $("check").addEventListener("click", () => {
    $("checked").textContent = "checking…";
    send("updater.check_updates", { force: true });
  });
  $("refresh-history").addEventListener("click", () => send("updater.get_history", { limit: 20 }));
  $("bundle-form").addEventListener("submit", (event) => {
    event.preventDefault();
    updateFromBundle(false);
  });
  $("bundle-dry-run").addEventListener("click", () => updateFromBundle(true));
  $("auth").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value;
    sessionStorage.setItem("dunebugger-token", token);
    $("auth").hidden = true;
    connect();
  });
  connect();
});

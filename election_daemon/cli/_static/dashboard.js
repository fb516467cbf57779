"use strict";
// Renders the state that /events pushes. Identities and data come from whoever can write
// under the election path: they only ever reach the page as textContent, never as HTML.

const MAX_TEXT = 200;
let current = null;
let receivedAt = 0;

function text(value) {
  const s = value === null || value === undefined ? "" : String(value);
  return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT - 1) + "…" : s;
}

function who(participant) {
  if (!participant) return "no leader";
  return participant.id === null ? "(unnamed)" : participant.id;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  const s = Math.floor(seconds);
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

// Unless the dashboard saw the takeover, ZooKeeper only tells when the leader's node was made.
function leading(seconds) {
  return (current.takeover_seen ? "" : "at most ") + duration(seconds);
}

function cell(row, value, title) {
  const td = row.insertCell();
  td.textContent = text(value);
  if (title) td.title = text(title);
  return td;
}

function data(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function setConnection(state, label) {
  const badge = document.getElementById("connection");
  badge.className = state;
  badge.textContent = label;
}

function tick() {
  if (!current || !current.leader) return;
  const led = current.leader_for_s + (Date.now() - receivedAt) / 1000;
  document.getElementById("leader-for").textContent = leading(led);
}

function render(state) {
  current = state;
  receivedAt = Date.now();
  document.getElementById("path").textContent = state.path;
  const leader = state.leader;
  document.getElementById("leader-card").className = leader ? "" : "none";
  document.getElementById("leader-id").textContent = text(who(leader));
  document.getElementById("leader-token").textContent = leader ? leader.token : "";
  document.getElementById("leader-session").textContent = leader ? leader.session_id : "";
  document.getElementById("leader-node").textContent = leader ? leader.node : "";
  document.getElementById("leader-for").textContent = leader ? leading(state.leader_for_s) : "";

  const participants = document.querySelector("#participants tbody");
  participants.replaceChildren();
  for (const p of state.participants) {
    const row = participants.insertRow();
    row.className = p.is_leader ? "leader" : "";
    row.dataset.token = p.czxid;
    cell(row, p.is_leader ? "★" : p.is_next ? "next" : "");
    cell(row, who(p), p.node);
    cell(row, p.recipe);
    cell(row, p.token === null ? "" : p.token);
    cell(row, p.session_id);
    cell(row, p.priority);
    cell(row, data(p.data), data(p.data));
  }
  document.getElementById("no-participants").hidden = state.participants.length > 0;

  const history = document.querySelector("#history tbody");
  history.replaceChildren();
  for (const change of state.history) {
    const row = history.insertRow();
    // ISO 8601 in UTC, as the daemons' logs write it (to the millisecond): comparable with them
    // whatever the browser's zone and locale.
    cell(row, new Date(change.time * 1000).toISOString());
    cell(row, change.previous ? who(change.previous) + " (" + change.previous.token + ")" : "no leader");
    cell(row, change.leader ? who(change.leader) : "no leader");
    cell(row, change.token === null ? "" : change.token);
    let gap = "";
    if (change.leaderless_s === 0) gap = "direct";
    else if (change.leaderless_s !== null) gap = change.leaderless_s.toFixed(3) + " s";
    cell(row, gap);
    cell(row, change.reason.replaceAll("_", " "));
  }
  document.getElementById("no-history").hidden = state.history.length > 0;

  if (state.connected) setConnection("live", "live");
  else setConnection("lost", "ZooKeeper unreachable: showing the last known state");
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function connect() {
  const events = new EventSource("events");
  events.onmessage = (message) => render(JSON.parse(message.data));
  events.onerror = () => setConnection("lost", "dashboard unreachable: reconnecting");
}

connect();
setInterval(tick, 1000);

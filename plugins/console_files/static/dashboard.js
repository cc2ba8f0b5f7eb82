// The live dashboard: a snapshot a second from /console/events (server-sent events),
// rendered into the tables; actions through /console/api.
import { action, bitrate, el, notice, run } from "./console.js";

const $ = (id) => document.getElementById(id);

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 60 20");
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(...values, 1);
  const line = document.createElementNS(ns, "polyline");
  const start = 60 - values.length;
  line.setAttribute("points", values.map((v, i) => `${start + i},${20 - (18 * v) / top - 1}`).join(" "));
  svg.append(line);
  return svg;
}

function status(value, info) {
  return el("span", {}, el("span", { className: "status", dataset: { status: value } }, value),
    info ? el("span", { className: "muted" }, ` ${info}`) : null);
}

function button(label, kind, onclick) {
  return el("button", { type: "button", className: `small ${kind}`, onclick }, label);
}

function fill(body, rows, columns) {
  body.replaceChildren(...(rows.length ? rows.map((row) => el("tr", {}, ...columns(row).map(
    (cell) => (cell instanceof Node && cell.tagName === "TD") ? cell : el("td", {}, cell))))
    : [el("tr", {}, el("td", { colSpan: 11, className: "empty" }, "none"))]));
}

function render(snapshot) {
  const streams = snapshot.streams || [];
  const recordings = new Map((snapshot.recordings || []).map((r) => [r.mediaSessionId, r]));
  const players = new Map();
  for (const s of streams) if (!s.published) players.set(s.name, (players.get(s.name) || 0) + 1);
  fill($("streams"), streams, (s) => {
    const rate = (s.metrics?.VIDEO_RATE || 0) + (s.metrics?.AUDIO_RATE || 0);
    const recording = recordings.get(s.mediaSessionId);
    const actions = el("td", {}, button("terminate", "danger", (e) =>
      run(e.target, "stream/terminate", { mediaSessionId: s.mediaSessionId })));
    if (s.published) {
      actions.append(" ", recording
        ? button("stop rec", "", (e) => run(e.target, "stream/stopRecording", { mediaSessionId: s.mediaSessionId }))
        : button("record", "", (e) => run(e.target, "stream/startRecording", { mediaSessionId: s.mediaSessionId })));
    }
    return [
      el("td", { className: "wrap" }, s.name),
      s.published ? "publisher" : "player",
      el("td", { className: "wrap" }, s.node || "this server"),
      status(s.status, s.info),
      [s.videoCodec, s.audioCodec].filter(Boolean).join(" + ") || "—",
      s.width ? `${s.width}×${s.height}` : "—",
      bitrate(rate),
      sparkline(s.bitrateHistory || []),
      s.published ? String(players.get(s.name) || 0) : "",
      el("td", { className: "mono wrap" }, recording ? recording.fileName : ""),
      actions,
    ];
  });
  fill($("sessions"), snapshot.sessions || [], (c) => [
    el("td", { className: "mono" }, c.sessionId.slice(0, 8)),
    c.appKey, c.remoteAddress, String(c.streams),
    el("td", {}, button("terminate", "danger", (e) =>
      run(e.target, "connection/terminate", { sessionId: c.sessionId }))),
  ]);
  fill($("pulls"), snapshot.pulls || [], (p) => [
    p.direction,
    el("td", { className: "wrap" }, p.localStreamName),
    el("td", { className: "wrap" }, `${p.remoteStreamName} @ ${p.uri}`),
    status(p.status, p.error),
    el("td", {}, button("terminate", "danger", (e) => run(e.target, "pull/terminate", {
      localStreamName: p.localStreamName, remoteStreamName: p.remoteStreamName, uri: p.uri }))),
  ]);
  fill($("vod"), snapshot.vod || [], (v) => [
    el("td", { className: "wrap" }, v.localStreamName),
    el("td", { className: "wrap" }, v.uri),
    v.loop ? "yes" : "no",
    el("td", {}, v.uri.startsWith("vod-live://") ? button("stop", "danger", (e) =>
      run(e.target, "vod/terminate", { localStreamName: v.localStreamName })) : ""),
  ]);
  const nodes = snapshot.nodes || [];
  $("nodes-card").hidden = !nodes.length;
  fill($("nodes"), nodes, (n) => [
    el("td", { className: "wrap" }, n.self ? `${n.node} (this one)` : n.node),
    el("td", { className: "mono wrap" }, n.ws), el("td", { className: "mono wrap" }, n.http),
    String(n.streams ?? ""), String(n.players ?? ""), String(n.edges ?? ""),
    `${n.cpu ?? "—"} %`, `${n.age} s ago`,
  ]);
  $("updated").textContent = `updated ${new Date(snapshot.time * 1000).toLocaleTimeString()}`;
}

function watch() {
  const events = new EventSource("/console/events");
  events.onmessage = (message) => {
    $("live").dataset.live = "yes";
    render(JSON.parse(message.data));
  };
  events.onerror = () => { $("live").dataset.live = "no"; };
}

function form(id, name, body) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    try {
      await action(name, body(data));
      notice(`${name}: done`);
      event.target.reset();
    } catch (error) {
      notice(`${name}: ${error.message}`, "error");
    }
  });
}

form("vod-form", "vod/startup", (d) => {
  const body = { uri: d.get("uri"), loop: d.get("loop") === "on" };
  if (d.get("localStreamName")) body.localStreamName = d.get("localStreamName");
  return body;
});
form("pull-form", "pull/pull", (d) => ({
  uri: d.get("uri"), remoteStreamName: d.get("remoteStreamName"),
  localStreamName: d.get("localStreamName") || d.get("remoteStreamName"),
}));
watch();

// The /play page: play a stream (live, vod:// or vod-live://), show its status and stats.
import { serverUrl, WcsSession } from "./wcs.js";

const $ = (id) => document.getElementById(id);
const [form, settings, button, name] = [$("form"), $("settings"), $("start"), $("name")];
const [statusBadge, info, video] = [$("status"), $("info"), $("video")];

/** The playback under way, from the click to its end: {session, stream, timer, over}. */
let run = null;

name.value = new URLSearchParams(location.search).get("name") || name.value;
form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (run) stop(run);
  else start();
});
addEventListener("pagehide", () => run && finish(run));

async function start() {
  const current = run = { session: null, stream: null, timer: 0, over: false };
  setRunning(true);
  showStats({});
  try {
    show("PENDING", "connecting");
    current.session = await WcsSession.connect(serverUrl());
    if (current.over) return finish(current); // stopped meanwhile
    current.stream = await current.session.play(name.value.trim());
    current.stream.addEventListener("status", () => showStream(current));
    video.srcObject = current.stream.mediaStream;
    current.timer = setInterval(() => {
      // a rejection means the peer connection closed meanwhile: the stream has ended
      updateStats(current).catch(() => {});
    }, 1000);
    showStream(current);
  } catch (error) {
    if (!current.over) show("FAILED", error.message);
    finish(current);
  }
}

/** The Stop button: stop playing (its STOPPED status shows), then release everything. */
async function stop(current) {
  button.disabled = true;
  if (current.stream) await current.stream.stop();
  else show("STOPPED", "Stopped by user");
  finish(current);
}

function showStream(current) {
  if (current !== run) return;
  show(current.stream.status, current.stream.info);
  if (current.stream.ended) finish(current);
}

/** Release the session (again if needed: a late connect too); the last frame stays shown. */
function finish(current) {
  current.over = true;
  clearInterval(current.timer);
  current.session?.close();
  if (current === run) {
    run = null;
    setRunning(false);
  }
}

/** The inbound video's resolution, frame rate and bitrate (from the bytes of the last second). */
async function updateStats(current) {
  if (current !== run) return;
  const report = await current.stream.pc.getStats();
  if (current !== run) return;
  for (const stats of report.values()) {
    if (stats.type !== "inbound-rtp" || (stats.kind ?? stats.mediaType) !== "video") continue;
    const previous = current.previous;
    current.previous = stats;
    if (!previous) continue; // rates need two reports
    const ms = stats.timestamp - previous.timestamp;
    showStats({
      width: stats.frameWidth ?? video.videoWidth,
      height: stats.frameHeight ?? video.videoHeight,
      fps: stats.framesPerSecond ?? ((stats.framesDecoded - previous.framesDecoded) * 1000) / ms,
      kbps: ((stats.bytesReceived - previous.bytesReceived) * 8) / ms, // bits per ms = kb/s
    });
  }
}

function showStats({ width, height, fps, kbps }) {
  $("resolution").textContent = width && height ? `${width}x${height}` : "–";
  $("fps").textContent = Number.isFinite(fps) ? String(Math.round(fps)) : "–";
  $("bitrate").textContent = Number.isFinite(kbps) ? String(Math.round(kbps)) : "–";
}

function show(status, text) {
  statusBadge.textContent = status;
  statusBadge.dataset.status = status;
  info.textContent = text;
}

function setRunning(running) {
  settings.disabled = running;
  button.disabled = false;
  button.textContent = running ? "Stop" : "Play";
  button.className = running ? "danger" : "primary";
}

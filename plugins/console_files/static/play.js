// The /play page: play a stream (live, vod:// or vod-live://), show its status and stats.
// /play?name=X plays X at once. A stream that is not published yet ("Stream not found")
// can be waited for: with "wait for it" ticked (or &wait=1), the page tries again every
// RETRY_SECONDS, counting down where the viewer sees it, until it plays or Stop is pressed.
// With "over WHEP" ticked (or &whep=1) it plays over WHEP (whep.js: POST /whep/<name> on
// this page's own server) instead of the WCS WebSocket signalling (wcs.js); both give a
// stream with the same status, events and stop(), so the rest of the page is the same.
import { serverUrl, WcsSession } from "./wcs.js";
import { WhepSession } from "./whep.js";

const RETRY_SECONDS = 5;
const NOT_FOUND = "Stream not found";

const $ = (id) => document.getElementById(id);
const [form, settings, button, name, wait, whep] =
  [$("form"), $("settings"), $("start"), $("name"), $("wait"), $("whep")];
const [statusBadge, info, retryText, video] = [$("status"), $("info"), $("retry"), $("video")];

/** The playback under way, from the click to its end: {session, stream, timer, over}. */
let run = null;
/** The countdown to the next try while waiting for the stream: {timer, left}. */
let retry = null;
/** The last playback ended with "Stream not found" (ticking "wait for it" retries it). */
let notFound = false;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (retry) stopWaiting("Stopped by user");
  else if (run) stop(run);
  else start();
});
wait.addEventListener("change", () => {
  if (wait.checked && notFound && !run && !retry) waitForIt();
  else if (!wait.checked && retry) stopWaiting("Stopped waiting");
});
addEventListener("pagehide", () => run && finish(run));
if (new URLSearchParams(location.search).get("name")) start();

async function start() {
  const current = run = { session: null, stream: null, timer: 0, over: false };
  notFound = false;
  hideRetry();
  setRunning(true);
  showStats({});
  try {
    show("PENDING", "connecting");
    current.session = whep.checked ? await WhepSession.connect(location.origin)
      : await WcsSession.connect(serverUrl());
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
  current.stopped = true;
  if (current.stream) await current.stream.stop();
  else show("STOPPED", "Stopped by user");
  finish(current);
}

function showStream(current) {
  if (current !== run) return;
  const { status, info: text, ended } = current.stream;
  show(status, text);
  if (!ended) return;
  finish(current);
  if (status === "FAILED" && text === NOT_FOUND && !current.stopped) {
    notFound = true;
    if (wait.checked) waitForIt();
    else showRetry(`not published yet: tick “wait for it” to try again every ${RETRY_SECONDS} s`);
  }
}

/** Count RETRY_SECONDS down where the viewer sees it, then try again. */
function waitForIt() {
  let left = RETRY_SECONDS;
  const tick = () => showRetry(`${NOT_FOUND}; trying again in ${left} s`);
  retry = {
    timer: setInterval(() => {
      left -= 1;
      if (left > 0) return tick();
      clearInterval(retry.timer);
      retry = null;
      start();
    }, 1000),
  };
  tick();
  setRunning(true);
}

function stopWaiting(reason) {
  clearInterval(retry.timer);
  retry = null;
  hideRetry();
  show("STOPPED", reason);
  setRunning(false);
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

function showRetry(text) {
  retryText.textContent = text;
  retryText.hidden = false;
}

function hideRetry() {
  retryText.textContent = "";
  retryText.hidden = true;
}

function setRunning(running) {
  settings.disabled = running;
  button.disabled = false;
  button.textContent = running ? "Stop" : "Play";
  button.className = running ? "danger" : "primary";
}

// The /publish page: publish the camera as a stream, show its status.
import { serverUrl, WcsSession } from "./wcs.js";

const $ = (id) => document.getElementById(id);
const [form, settings, button] = [$("form"), $("settings"), $("start")];
const [statusBadge, info, preview] = [$("status"), $("info"), $("preview")];

/** The publish under way, from the click to its end: {camera, session, stream, over}. */
let run = null;

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (run) stop(run);
  else start();
});
addEventListener("pagehide", () => run && finish(run));

async function start() {
  const current = run = { camera: null, session: null, stream: null, over: false };
  setRunning(true);
  try {
    if (!navigator.mediaDevices) throw new Error("the camera needs a secure page (https or localhost)");
    show("PENDING", "opening the camera");
    current.camera = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    if (current.over) return finish(current); // stopped meanwhile: release what came late
    preview.srcObject = current.camera;
    show("PENDING", "connecting");
    current.session = await WcsSession.connect(serverUrl());
    if (current.over) return finish(current);
    current.stream = await current.session.publish($("name").value.trim(), current.camera, {
      videoCodec: $("codec").value,
      record: $("record").checked,
    });
    current.stream.addEventListener("status", () => showStream(current));
    showStream(current);
  } catch (error) {
    if (!current.over) show("FAILED", error.message);
    finish(current);
  }
}

/** The Stop button: unpublish (its UNPUBLISHED status shows), then release everything. */
async function stop(current) {
  button.disabled = true;
  if (current.stream) await current.stream.stop();
  else show("UNPUBLISHED", "Stopped by user");
  finish(current);
}

function showStream(current) {
  if (current !== run) return;
  const { status, info: text, recordName } = current.stream;
  show(status, text);
  if (recordName) {
    $("record-name").textContent = recordName;
    $("recording").hidden = false;
  }
  if (current.stream.ended) finish(current);
}

/** Release the camera and the session (again if needed: late arrivals too). */
function finish(current) {
  current.over = true;
  current.camera?.getTracks().forEach((track) => track.stop());
  current.session?.close();
  if (current === run) {
    run = null;
    preview.srcObject = null;
    setRunning(false);
  }
}

function show(status, text) {
  statusBadge.textContent = status;
  statusBadge.dataset.status = status;
  info.textContent = text;
}

function setRunning(running) {
  settings.disabled = running;
  button.disabled = false;
  button.textContent = running ? "Stop" : "Publish";
  button.className = running ? "danger" : "primary";
  if (running) $("recording").hidden = true;
}

// wcs.js: the WCS WebSocket signalling protocol from a browser.
//
// One ES module with no dependencies, used by the hookcast console and meant for your
// own pages too. It speaks the protocol the way the Flashphoner WCS Web SDK does:
//
// - every frame is JSON: {"message": <name>, "data": [<arguments>...]};
// - the client opens with `connection`; the server accepts with `getUserData` (or
//   refuses with `fail` and closes);
// - the client always sends the SDP offer, for a player too, inside `publishStream` /
//   `playStream` with a stream object; the server answers `setRemoteSDP`
//   [mediaSessionId, answer], then reports each status change of the stream with
//   `notifyStreamStatusEvent` (the stream object with `status` and `info`);
// - the client stops a stream with `unPublishStream` / `stopStream`;
// - the server pings (`ping`), the client answers `pong`; a refused request is a `fail`
//   {apiMethod, info, id?}, where `id` is the mediaSessionId of the stream concerned.
//
// The offer is sent at once, without candidates: the server learns the browser's
// address from its connectivity checks and puts its own candidates in the answer, so
// there is no trickle ICE.
//
// Example:
//
//   import { serverUrl, WcsSession } from "/console/static/wcs.js";
//   const session = await WcsSession.connect(serverUrl());
//   const camera = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
//   const stream = await session.publish("stream1", camera, { videoCodec: "H264" });
//   stream.addEventListener("status", () => console.log(stream.status, stream.info));
//   ...
//   await stream.stop();
//   session.close();

/** The statuses that end a stream: its peer connection is closed after them. */
export const FINAL = Object.freeze(["UNPUBLISHED", "STOPPED", "FAILED"]);

const CLIENT_VERSION = "2.0";
/** How long the server gets to accept a session. */
const CONNECT_TIMEOUT_MS = 20_000;
/** How long stop() waits for the server to confirm that a stream ended. */
const STOP_TIMEOUT_MS = 5_000;

/** The server refused or failed a request; the message is what it said. */
export class WcsError extends Error {
  name = "WcsError";
}

/**
 * The ws:// (or wss://) URL of the signalling port of the server that served this page,
 * from the page's `<body data-ws-port data-wss-port>`: wss when the page came over https
 * and the server has a wss port (non-zero).
 */
export function serverUrl() {
  const { wsPort, wssPort } = document.body.dataset;
  const secure = location.protocol === "https:" && Number(wssPort) > 0;
  // location.hostname keeps the brackets of an IPv6 address
  return secure ? `wss://${location.hostname}:${wssPort}/` : `ws://${location.hostname}:${wsPort}/`;
}

/**
 * One WebSocket session with the server. Create it with `WcsSession.connect()`.
 *
 * Events: "fail" (detail: the server's fail object {apiMethod, info, id?}) and "close"
 * (detail: {code, reason}) once the WebSocket has closed, whoever closed it.
 */
export class WcsSession extends EventTarget {
  /** What the server sent in `getUserData` (its `sessionId` among others). */
  userData = {};
  #ws;
  /** The streams of this session that have not ended, by mediaSessionId. */
  #streams = new Map();
  /** connect()'s promise, settled by getUserData or by the socket closing. */
  #accepting = null;
  /** Why the server refused the session: the info of its last `fail` of `connection`. */
  #refusal = "";

  /** Use `WcsSession.connect()`. */
  constructor(ws) {
    super();
    this.#ws = ws;
    ws.addEventListener("message", (event) => this.#receive(event.data));
    ws.addEventListener("close", (event) => this.#closed(event));
  }

  /**
   * Open a session with the server at `url`; resolves with the session once the server
   * accepted it (`getUserData`), rejects with a WcsError giving the server's reason.
   * `appKey` chooses the server's application (its hooks); `custom` is any JSON object
   * the server's hooks and plugins receive.
   */
  static async connect(url, { appKey = "defaultApp", custom = {} } = {}) {
    const session = new WcsSession(new WebSocket(url));
    session.#ws.addEventListener("open", () => session.#send("connection", {
      appKey,
      mediaProviders: ["WebRTC"],
      clientVersion: CLIENT_VERSION,
      clientOSVersion: navigator.platform,
      clientBrowserVersion: navigator.userAgent,
      custom,
    }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new WcsError(`the server at ${url} did not answer`));
        session.close();
      }, CONNECT_TIMEOUT_MS);
      session.#accepting = {
        resolve: () => { clearTimeout(timer); resolve(session); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
    });
  }

  /** True while the WebSocket is open. */
  get connected() {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  /**
   * Publish `mediaStream` (its audio and video tracks) as `name`. Resolves with the
   * WcsStream as soon as the request is sent, its status PENDING: add a "status"
   * listener right away and no status is missed. `videoCodec` is "VP8" or "H264" (put
   * first in the offer); `record: true` asks the server to record the stream.
   */
  async publish(name, mediaStream, { videoCodec = "VP8", record = false, custom = {} } = {}) {
    const pc = new RTCPeerConnection();
    try {
      for (const track of mediaStream.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [mediaStream] });
        if (track.kind === "video") preferCodec(transceiver, `video/${videoCodec}`);
      }
    } catch (error) {
      pc.close();
      throw error;
    }
    const kinds = mediaStream.getTracks().map((track) => track.kind);
    const stream = new WcsStream(this.#sender(), {
      name, published: true, pc, mediaStream, record, custom,
      hasAudio: kinds.includes("audio"), hasVideo: kinds.includes("video"),
    });
    return this.#start("publishStream", stream);
  }

  /**
   * Play the stream `name` (a live stream, or a file: vod://file.mp4, vod-live://file.mp4).
   * Resolves like publish(); `stream.mediaStream` receives the remote audio and video:
   * give it to a <video> element's srcObject at once.
   */
  async play(name, { custom = {} } = {}) {
    const pc = new RTCPeerConnection();
    const receivers = ["audio", "video"].map((kind) =>
      pc.addTransceiver(kind, { direction: "recvonly" }).receiver);
    const mediaStream = new MediaStream(receivers.map((receiver) => receiver.track));
    const stream = new WcsStream(this.#sender(), {
      name, published: false, pc, mediaStream, record: false, custom,
      hasAudio: true, hasVideo: true,
    });
    return this.#start("playStream", stream);
  }

  /** End every stream (FAILED "connection closed", as the SDK does) and close the WebSocket. */
  close() {
    this.#failStreams("connection closed");
    this.#ws.close(1000);
  }

  async #start(api, stream) {
    try {
      if (!this.connected) throw new WcsError("the session is closed");
      await stream.pc.setLocalDescription(await stream.pc.createOffer());
      // registered before sending, so that the answer finds it
      this.#streams.set(stream.mediaSessionId, stream);
      stream.addEventListener("status", () => {
        if (stream.ended) this.#streams.delete(stream.mediaSessionId);
      });
      if (!this.#send(api, { ...stream.toWcs(), sdp: stream.pc.localDescription.sdp })) {
        throw new WcsError("the session is closed");
      }
      return stream;
    } catch (error) {
      this.#streams.delete(stream.mediaSessionId);
      stream.pc.close();
      throw error;
    }
  }

  /** Send one message; false if the WebSocket is not open. */
  #send(message, ...data) {
    if (!this.connected) return false;
    this.#ws.send(JSON.stringify({ message, data }));
    return true;
  }

  /** What a stream uses to send its stop. */
  #sender() {
    return (message, payload) => this.#send(message, payload);
  }

  #receive(text) {
    if (typeof text !== "string") return; // binary frames are another protocol
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return console.warn("wcs: ignoring a frame that is not JSON", text.slice(0, 200));
    }
    const data = Array.isArray(frame?.data) ? frame.data : [];
    const [first, second] = data;
    switch (frame?.message) {
      case "ping":
        this.#send("pong", null);
        break;
      case "getUserData":
        this.userData = first ?? {};
        this.#accepting?.resolve();
        this.#accepting = null;
        break;
      case "setRemoteSDP": // [mediaSessionId, answer]
        this.#streams.get(first)?._answer(second);
        break;
      case "notifyStreamStatusEvent":
      case "notifyVideoFormat": // the SDK treats both alike
        this.#streams.get(first?.mediaSessionId)?._status(first);
        break;
      case "fail":
        this.#failed(first ?? {});
        break;
    }
  }

  /** A `fail` {apiMethod, info, id?}: a refused session, or a refused request of a stream. */
  #failed(fail) {
    if (fail.apiMethod === "connection") this.#refusal = String(fail.info ?? "");
    const stream = this.#streams.get(fail.id);
    stream?._status({ ...stream.toWcs(), status: "FAILED", info: String(fail.info ?? "") });
    this.dispatchEvent(new CustomEvent("fail", { detail: fail }));
  }

  #closed(event) {
    const reason = this.#refusal || event.reason || "connection closed";
    this.#accepting?.reject(new WcsError(reason));
    this.#accepting = null;
    this.#failStreams("connection closed");
    this.dispatchEvent(new CustomEvent("close", { detail: { code: event.code, reason } }));
  }

  #failStreams(info) {
    for (const stream of [...this.#streams.values()]) {
      stream._status({ ...stream.toWcs(), status: "FAILED", info });
    }
  }
}

/**
 * One published or played stream of a WcsSession.
 *
 * Fields: `mediaSessionId`, `name`, `published`, `status` and `info` (the latest the
 * server sent), `recordName` (the recording's file name, once the server tells it),
 * `pc` (the RTCPeerConnection), `mediaStream` (what is published, or what plays).
 *
 * Event "status" (detail: the stream object the server sent) on every status change;
 * after UNPUBLISHED, STOPPED or FAILED the stream is over and its `pc` closed. Statuses
 * the browser sets itself (the connection closed, ICE failed) come as the same event.
 */
export class WcsStream extends EventTarget {
  mediaSessionId = randomUuid();
  status = "PENDING";
  info = "";
  recordName = "";
  #send;
  #fields;

  constructor(send, { name, published, pc, mediaStream, record, custom, hasAudio, hasVideo }) {
    super();
    this.#send = send;
    this.#fields = { record, custom, hasAudio, hasVideo };
    this.name = name;
    this.published = published;
    this.pc = pc;
    this.mediaStream = mediaStream;
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") {
        this._status({ ...this.toWcs(), status: "FAILED", info: "ICE failed" });
      }
    });
  }

  /** True once the stream has ended (UNPUBLISHED, STOPPED or FAILED). */
  get ended() {
    return FINAL.includes(this.status);
  }

  /** The stream object of the protocol, as the client sends it. */
  toWcs() {
    return {
      mediaSessionId: this.mediaSessionId,
      name: this.name,
      published: this.published,
      hasVideo: this.#fields.hasVideo,
      hasAudio: this.#fields.hasAudio,
      status: this.status,
      record: this.#fields.record,
      mediaProvider: "WebRTC",
      custom: this.#fields.custom,
    };
  }

  /**
   * Ask the server to stop the stream (unPublishStream for a publisher, stopStream for a
   * player), wait for it to confirm (UNPUBLISHED / STOPPED) for a few seconds, then
   * close the peer connection. The tracks of a published MediaStream stay yours to stop.
   */
  async stop() {
    if (!this.ended && this.#send(this.published ? "unPublishStream" : "stopStream", this.toWcs())) {
      await this.#whenEnded(STOP_TIMEOUT_MS);
    }
    if (!this.ended) {
      const status = this.published ? "UNPUBLISHED" : "STOPPED";
      this._status({ ...this.toWcs(), status, info: "Stopped by user (not confirmed by the server)" });
    }
    this.pc.close();
  }

  /** (Called by WcsSession) the server's answer to our offer. */
  async _answer(sdp) {
    if (this.ended || this.pc.signalingState !== "have-local-offer") return;
    try {
      await this.pc.setRemoteDescription({ type: "answer", sdp });
    } catch (error) {
      this.#send(this.published ? "unPublishStream" : "stopStream", this.toWcs());
      this._status({ ...this.toWcs(), status: "FAILED", info: `the answer was refused: ${error.message}` });
    }
  }

  /** (Called by WcsSession) a stream object with a new status, from the server or local. */
  _status(object) {
    if (this.ended) return; // nothing comes after the end
    this.status = String(object.status ?? this.status);
    this.info = String(object.info ?? "");
    if (object.recordName) this.recordName = String(object.recordName);
    if (this.ended) this.pc.close();
    this.dispatchEvent(new CustomEvent("status", { detail: object }));
  }

  /** Resolves once the stream has ended, or after `ms`. */
  #whenEnded(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.removeEventListener("status", check);
        resolve();
      };
      const check = () => { if (this.ended) done(); };
      const timer = setTimeout(done, ms);
      this.addEventListener("status", check);
    });
  }
}

/**
 * Put `mimeType` (e.g. "video/H264") first among the codecs `transceiver` offers, the
 * others after it as fallbacks. Throws if the browser cannot send that codec.
 */
function preferCodec(transceiver, mimeType) {
  if (typeof transceiver.setCodecPreferences !== "function") return; // the browser's own order
  const key = (codec) =>
    [codec.mimeType, codec.clockRate, codec.channels, codec.sdpFmtpLine].join(" ").toLowerCase();
  // codecs this browser both sends and receives: every browser accepts those here
  const receivable = new Set(RTCRtpReceiver.getCapabilities("video").codecs.map(key));
  const codecs = RTCRtpSender.getCapabilities("video").codecs.filter((c) => receivable.has(key(c)));
  const chosen = codecs.filter((c) => c.mimeType.toLowerCase() === mimeType.toLowerCase());
  if (chosen.length === 0) throw new WcsError(`this browser cannot send ${mimeType}`);
  transceiver.setCodecPreferences([...chosen, ...codecs.filter((c) => !chosen.includes(c))]);
}

/** A random (version 4) UUID; crypto.randomUUID() exists only on https and localhost pages. */
function randomUuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

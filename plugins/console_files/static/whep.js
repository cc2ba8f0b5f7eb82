// whep.js: play a stream over WHEP (draft-ietf-wish-whep) from a browser.
//
// One ES module, shaped like wcs.js so that a page plays over either with the same code:
// `WhepSession.connect(origin)` then `session.play(name)` gives a WhepStream with the
// fields, events and stop() of wcs.js's WcsStream (`status`, `info`, `ended`, "status"
// events, `stop()`, `pc`, `mediaStream`). The exchange:
//
// - the offer (recvonly audio and video) is sent once ICE gathering is complete (or
//   after GATHERING_MS, whichever comes first), with its candidates: no trickle (PATCH);
// - `POST <origin>/whep/<name>` with `Content-Type: application/sdp`; 201 carries the
//   answer, and the session's URL in `Location`. Any other answer makes the stream
//   FAILED with the server's words: "Stream not found" (404), the title of a 422's
//   problem+json, the text of the others;
// - the stream is PLAYING once its peer connection connects, STOPPED when the server
//   ends it (it closes DTLS), FAILED if the connection fails;
// - stop() DELETEs the session's URL (STOPPED), as does closing the session.
//
// Example:
//
//   import { WhepSession } from "/console/static/whep.js";
//   const session = await WhepSession.connect(location.origin);
//   const stream = await session.play("stream1");
//   video.srcObject = stream.mediaStream;
//   stream.addEventListener("status", () => console.log(stream.status, stream.info));
//   ...
//   await stream.stop();

import { FINAL, WcsError } from "./wcs.js";

/** How long the offer waits for ICE gathering to complete before it is sent as it is. */
const GATHERING_MS = 2_000;
/** How long an offer (POST) and a stop (DELETE) wait for the server. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * The WHEP endpoints of one server (`origin`, e.g. "https://host:8081"), with an
 * optional Bearer `token`. Nothing is opened: connect() exists to read like wcs.js.
 */
export class WhepSession {
  #origin;
  #token;
  /** The streams of this session that have not ended. */
  #streams = new Set();

  constructor(origin, { token = "" } = {}) {
    this.#origin = String(origin).replace(/\/+$/, "");
    this.#token = token;
  }

  /** A session with the server at `origin` (resolves at once: WHEP has no session). */
  static async connect(origin, options = {}) {
    return new WhepSession(origin, options);
  }

  /**
   * Play the stream `name`. Resolves with the WhepStream at once, its status PENDING:
   * add a "status" listener and give `stream.mediaStream` to a <video> right away.
   */
  async play(name) {
    const pc = new RTCPeerConnection();
    const receivers = ["audio", "video"].map((kind) =>
      pc.addTransceiver(kind, { direction: "recvonly" }).receiver);
    const mediaStream = new MediaStream(receivers.map((receiver) => receiver.track));
    const stream = new WhepStream(name, pc, mediaStream, this.#token);
    this.#streams.add(stream);
    stream.addEventListener("status", () => stream.ended && this.#streams.delete(stream));
    stream._negotiate(`${this.#origin}/whep/${encodeURIComponent(name)}`);
    return stream;
  }

  /** End every stream of this session without waiting (DELETE sent with keepalive). */
  close() {
    for (const stream of [...this.#streams]) stream._release("session closed");
  }
}

/**
 * One stream played over WHEP. Fields: `name`, `published` (false), `status` and `info`,
 * `location` (the session's URL, once the server answered), `pc`, `mediaStream`.
 *
 * Event "status" (detail: {status, info}) on every status change; after STOPPED or
 * FAILED the stream is over and its `pc` closed.
 */
export class WhepStream extends EventTarget {
  published = false;
  status = "PENDING";
  info = "";
  location = "";
  #token;

  constructor(name, pc, mediaStream, token) {
    super();
    this.name = name;
    this.pc = pc;
    this.mediaStream = mediaStream;
    this.#token = token;
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected" && this.status === "PENDING") {
        this._status("PLAYING", "");
      } else if (pc.connectionState === "failed") {
        this._status("FAILED", "the connection to the server was lost");
      }
    });
  }

  /** True once the stream has ended (STOPPED or FAILED). */
  get ended() {
    return FINAL.includes(this.status);
  }

  /** End the session on the server (DELETE), then close the peer connection. */
  async stop() {
    if (!this.ended) this._status("STOPPED", "Stopped by user");
    await this.#delete(false);
  }

  /** (Called by WhepSession) the offer, the POST and the answer; a failure ends the stream. */
  async _negotiate(endpoint) {
    try {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await gathered(this.pc, GATHERING_MS);
      if (this.ended) return;
      const response = await fetch(endpoint, {
        method: "POST",
        headers: this.#headers({ "Content-Type": "application/sdp" }),
        body: this.pc.localDescription.sdp,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const body = await response.text();
      if (response.status !== 201) throw new WcsError(refusal(response, body));
      const location = response.headers.get("Location");
      if (!location) throw new WcsError("the server's answer has no Location");
      this.location = new URL(location, endpoint).href;
      if (this.ended) return this.#delete(false); // stopped while the server answered
      await this.pc.setRemoteDescription({ type: "answer", sdp: body });
      this.#watchTransports();
    } catch (error) {
      if (this.ended) return;
      this._status("FAILED", error instanceof WcsError ? error.message
        : `${endpoint}: ${error.message}`);
      await this.#delete(false);
    }
  }

  /** (Called by WhepSession.close) end the stream without waiting for the server. */
  _release(info) {
    if (!this.ended) this._status("STOPPED", info);
    this.#delete(true);
  }

  _status(status, info) {
    if (this.ended) return; // nothing comes after the end
    this.status = status;
    this.info = info;
    if (this.ended) this.pc.close();
    this.dispatchEvent(new CustomEvent("status", { detail: { status, info } }));
  }

  /** DELETE the session's URL once (a failure is only logged: the server times it out). */
  async #delete(keepalive) {
    this.pc.close();
    const url = this.location;
    this.location = "";
    if (!url) return;
    try {
      await fetch(url, { method: "DELETE", headers: this.#headers({}), keepalive,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (error) {
      console.warn(`whep: DELETE ${url}: ${error.message}`);
    }
  }

  /**
   * WHEP has no channel for the server to say that a stream ended (its publisher
   * stopped, it was terminated): the server closes DTLS (close_notify), which the
   * browser shows at once as the transport's "closed" state, long before ICE fails.
   */
  #watchTransports() {
    const transports = new Set(this.pc.getReceivers().map((receiver) => receiver.transport));
    for (const transport of transports) {
      transport?.addEventListener("statechange", () => {
        if (transport.state === "closed") this._status("STOPPED", "Stopped by the server");
      });
    }
  }

  #headers(headers) {
    return this.#token ? { ...headers, Authorization: `Bearer ${this.#token}` } : headers;
  }
}

/** Resolves once `pc` has gathered its ICE candidates, or after `ms`. */
function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** What the server said when it refused an offer: a problem's title, or its text. */
function refusal(response, body) {
  if ((response.headers.get("Content-Type") ?? "").startsWith("application/problem+json")) {
    try {
      const title = JSON.parse(body).title;
      if (title) return String(title);
    } catch {
      // not JSON after all: its text, below
    }
  }
  return body.trim() || `${response.status} ${response.statusText}`.trim();
}

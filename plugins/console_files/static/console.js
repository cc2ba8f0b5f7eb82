// What every console page shares: calling the REST API through /console/api, and
// building DOM from data without ever parsing it as HTML.

/** POST a REST method (e.g. "stream/terminate") through the console; returns the JSON
 * answer, throws an Error carrying the server's message. */
export async function action(name, body = {}) {
  const response = await fetch(`/console/api/${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(answer?.message || `${response.status} ${response.statusText}`);
  }
  return answer;
}

/** An element: el("td", {className: "mono"}, "text", child, ...). Strings become text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Show a one-line message (#notice) for a few seconds. */
export function notice(text, kind = "info") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.textContent = text;
  box.dataset.kind = kind;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { box.textContent = ""; }, 6000);
}

/** Run an action from a button: disable it meanwhile, report failures. */
export async function run(button, name, body) {
  button.disabled = true;
  try {
    const answer = await action(name, body);
    notice(`${name}: done`);
    return answer;
  } catch (error) {
    notice(`${name}: ${error.message}`, "error");
    return null;
  } finally {
    button.disabled = false;
  }
}

export function bitrate(bits) {
  if (!bits) return "—";
  return bits >= 1e6 ? `${(bits / 1e6).toFixed(2)} Mb/s` : `${Math.round(bits / 1e3)} kb/s`;
}

export function bytes(size) {
  const units = ["B", "KB", "MB", "GB"];
  let value = size, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// The media page: start a shared vod-live:// reading of a file (then play it by name).
import { bytes, notice, run } from "./console.js";

for (const cell of document.querySelectorAll("[data-bytes]")) {
  cell.textContent = bytes(Number(cell.dataset.bytes));
}
document.querySelector("tbody")?.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action=live]");
  if (!button) return;
  const uri = `vod-live://${button.closest("tr").dataset.file}`;
  const started = await run(button, "vod/startup", { uri });
  if (started) notice(`${uri} is published as ${started.localStreamName}`);
});

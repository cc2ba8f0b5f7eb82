// The recordings page: each file's stream and times, play it (seekable: the server
// answers range requests), download it, delete it (after a confirmation naming it).
import { bytes, run } from "./console.js";

for (const cell of document.querySelectorAll("[data-bytes]")) {
  cell.textContent = bytes(Number(cell.dataset.bytes));
}
for (const time of document.querySelectorAll("time[data-when]")) {
  time.textContent = new Date(Number(time.dataset.when)).toLocaleString();
}
document.querySelector("tbody")?.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  const row = button.closest("tr");
  const file = row.dataset.file;
  if (button.dataset.action === "play") {
    const video = document.getElementById("video");
    document.getElementById("viewer").hidden = false;
    document.getElementById("viewing").textContent = file;
    video.src = row.querySelector("a.download").href;
    video.play().catch(() => {});
  } else if (button.dataset.action === "delete") {
    if (!confirm(`Delete the recording ${file}? This cannot be undone.`)) return;
    if (await run(button, "records/delete", { fileName: file })) row.remove();
  }
});

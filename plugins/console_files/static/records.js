// The recordings page: play a file (seekable: the server answers range requests),
// download it, delete it.
import { bytes, run } from "./console.js";

for (const cell of document.querySelectorAll("[data-bytes]")) {
  cell.textContent = bytes(Number(cell.dataset.bytes));
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
    if (await run(button, "records/delete", { fileName: file })) row.remove();
  }
});

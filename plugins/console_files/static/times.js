// Epoch milliseconds in [data-time] shown in the reader's local time.
for (const cell of document.querySelectorAll("[data-time]")) {
  cell.textContent = new Date(Number(cell.dataset.time)).toLocaleTimeString();
}

// The Hooks page: dead notifications of the outbox retried (pending again, due now) or
// deleted (after a confirmation naming them), through the console's action API; the
// page is then loaded again, counts and tables as the server has them.
import { run } from "./console.js";

const outbox = document.getElementById("outbox");
outbox?.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("tr");
  const id = row ? Number(row.dataset.id) : null;
  let done = null;
  if (button.dataset.action === "retry") {
    done = await run(button, "hooks/outbox/retry", { ids: [id] });
  } else if (button.dataset.action === "retry-all") {
    done = await run(button, "hooks/outbox/retry", {});
  } else if (button.dataset.action === "delete") {
    if (!confirm(`Delete the dead notification ${id} (${row.dataset.method})? It will not be delivered.`)) return;
    done = await run(button, "hooks/outbox/delete", { ids: [id] });
  }
  if (done) location.reload();
});

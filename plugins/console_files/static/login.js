// The sign-in form (rest_api_token): the server checks the token and sets a session cookie.
import { notice } from "./console.js";

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/console/login", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (response.ok) location.reload();
  else notice((await response.json().catch(() => ({}))).message || "refused", "error");
});

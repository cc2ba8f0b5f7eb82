// The light / dark switch of every console page: auto (the system's), light, dark.
const order = ["auto", "light", "dark"];
const button = document.getElementById("theme");
button?.addEventListener("click", () => {
  const now = document.documentElement.dataset.theme || "auto";
  const next = order[(order.indexOf(now) + 1) % order.length];
  document.documentElement.dataset.theme = next;
  localStorage.setItem("hookcast-theme", next);
  button.title = `theme: ${next}`;
});

// Runs before the first paint (a classic, blocking script): the saved theme, else auto.
document.documentElement.dataset.theme = localStorage.getItem("hookcast-theme") || "auto";

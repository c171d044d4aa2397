// Progressive enhancement only: every page works without this file.
// 1. Move focus to the error summary so screen readers announce it.
// 2. While an outcome is pending, reload the page every few seconds (the page also offers a link).
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.querySelector("[data-fokus]");
  if (summary) { summary.focus(); }
  var pending = document.querySelector("[data-neu-laden]");
  if (pending) {
    var seconds = parseInt(pending.getAttribute("data-neu-laden"), 10) || 3;
    window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
  }
});

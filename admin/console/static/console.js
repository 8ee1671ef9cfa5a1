// The console works without this file; it adds two conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Ask before destructive actions marked with data-confirm.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  // A rollout being applied: reload its page to move the progress bar.
  var bar = document.getElementById("rollout-progress");
  if (bar && bar.dataset.refresh) {
    window.setTimeout(function () { window.location.reload(); }, 1000 * Number(bar.dataset.refresh));
  }
  // "Select all" on the assign list.
  var all = document.getElementById("check-all");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=serial]").forEach(function (c) { c.checked = all.checked; });
    });
  }
});

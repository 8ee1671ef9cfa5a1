// The console works without this file; it adds two conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Ask before destructive actions marked with data-confirm.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
  // "Select all" on the assign list.
  var all = document.getElementById("check-all");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=serial]").forEach(function (c) { c.checked = all.checked; });
    });
  }
});

// Draws every chart of the page (and of fragments htmx swaps in) with the vendored vega-embed.
// Each chart's Vega-Lite spec sits beside it in a <script type="application/json"> built in Python.
(function () {
  "use strict";
  var ACTIONS = { export: true, source: false, compiled: false, editor: false }; // no link to the online editor

  function draw(root) {
    root.querySelectorAll("[data-chart]:not([data-rendered])").forEach(function (el) {
      el.setAttribute("data-rendered", "pending");
      var source = document.getElementById(el.getAttribute("data-chart"));
      vegaEmbed(el, JSON.parse(source.textContent), { renderer: "svg", actions: ACTIONS })
        .then(function () { el.setAttribute("data-rendered", "true"); })
        .catch(function (err) {
          el.setAttribute("data-rendered", "error");
          el.textContent = "This chart could not be drawn: " + err.message;
        });
    });
  }

  // JSON fields (architecture, parameters) say at once whether they parse; the server still checks
  // everything and its errors replace this hint on submit.
  function checkJson(field) {
    var hint = document.getElementById(field.id + "-json");
    var text = field.value.trim();
    var message = "";
    if (text) {
      try { JSON.parse(text); } catch (err) { message = "not valid JSON yet: " + err.message; }
    }
    hint.textContent = message;
    field.setAttribute("aria-invalid", message ? "true" : "false");
  }

  function watchJson(root) {
    root.querySelectorAll("[data-json]").forEach(function (field) {
      field.addEventListener("input", function () { checkJson(field); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); watchJson(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.target.parentNode || document); });
})();

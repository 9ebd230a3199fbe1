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

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.target.parentNode || document); });
})();

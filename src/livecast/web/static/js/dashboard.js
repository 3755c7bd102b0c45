/* Dashboard niceties: reveal and copy the stream key, and keep the health panel fresh. */
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (btn) {
    btn.addEventListener("click", function () {
      var input = document.querySelector(btn.dataset.copy);
      var done = function () { btn.textContent = "Copied"; setTimeout(function () { btn.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard) navigator.clipboard.writeText(input.value).then(done, function () {});
      else { input.select(); document.execCommand("copy"); done(); }
    });
  });
  var reveal = document.getElementById("btn-reveal-key");
  if (reveal) reveal.addEventListener("click", function () {
    var input = document.querySelector(reveal.dataset.target);
    var hidden = input.type === "password";
    input.type = hidden ? "text" : "password";
    reveal.textContent = hidden ? "Hide" : "Show";
  });
  var reset = document.getElementById("form-reset-key");
  if (reset) reset.addEventListener("submit", function (ev) {
    if (!window.confirm("Reset your stream key? Your current key stops working immediately.")) ev.preventDefault();
  });
  var body = document.getElementById("health-body");
  var badge = document.getElementById("health-status");
  function poll() {
    fetch("/web/api/dashboard/health", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var status = doc.body.firstElementChild ? doc.body.firstElementChild.dataset.status : null;
        if (status) { badge.textContent = status.toUpperCase(); badge.className = "lc-status lc-status-" + status; }
        body.innerHTML = doc.body.firstElementChild ? doc.body.firstElementChild.innerHTML : "";
      })
      .catch(function () {})
      .then(function () { setTimeout(poll, 5000); });
  }
  if (body) setTimeout(poll, 5000);
})();

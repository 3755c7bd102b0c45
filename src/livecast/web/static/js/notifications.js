/* The header's bell: go-live notifications of followed channels, with an unread badge.
 * Polls the feed every 30 s; opening the panel marks what it shows as read. */
(function () {
  "use strict";
  var root = document.getElementById("site-notifs");
  if (!root) return;
  var bell = document.getElementById("notif-bell");
  var badge = document.getElementById("notif-count");
  var panel = document.getElementById("notif-panel");
  var list = document.getElementById("notif-list");
  var empty = document.getElementById("notif-empty");
  var newest = null;

  function render(doc) {
    badge.hidden = !doc.unread;
    badge.textContent = doc.unread > 99 ? "99+" : String(doc.unread);
    list.textContent = "";
    empty.hidden = doc.data.length > 0;
    newest = doc.data.length ? parseInt(doc.data[0].id, 10) : null;
    doc.data.forEach(function (n) {
      var li = document.createElement("li");
      li.className = "site-notif" + (n.read ? "" : " site-notif-unread");
      var a = document.createElement("a");
      a.href = "/" + encodeURIComponent(n.channel_login);
      a.textContent = (n.channel_name || n.channel_login) + " went live";  // text, never HTML
      var when = document.createElement("span");
      when.className = "site-notif-when";
      when.textContent = new Date(n.created_at).toLocaleString();
      li.appendChild(a);
      li.appendChild(when);
      list.appendChild(li);
    });
  }

  function load() {
    return fetch("/api/notifications?first=10", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) { if (doc) render(doc); })
      .catch(function () {});
  }

  function markRead() {
    if (newest === null || badge.hidden) return;
    fetch("/api/notifications/read", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
      body: JSON.stringify({ up_to: newest })
    }).then(function (r) { if (r.ok) badge.hidden = true; }).catch(function () {});
  }

  bell.addEventListener("click", function () {
    var open = panel.hidden;
    panel.hidden = !open;
    bell.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) markRead();
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !panel.hidden) { panel.hidden = true; bell.setAttribute("aria-expanded", "false"); bell.focus(); }
  });
  load();
  setInterval(load, 30000);
})();

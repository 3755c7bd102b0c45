/* Dashboard controls for channel points rewards, the redemption queue, predictions and polls.
 * Calls /api/community/{login}/manage/... with the page's CSRF token and stays current with
 * the channel's server-sent events stream (a new redemption shows up in the queue at once). */
(function () {
  "use strict";
  var panel = document.getElementById("panel-community");
  if (!panel) return;
  var login = panel.dataset.login;
  var csrf = panel.dataset.csrf;
  var base = "/api/community/" + encodeURIComponent(login);

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function button(text, onClick, cls) {
    var b = el("button", "lc-btn lc-btn-small" + (cls ? " " + cls : ""), text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }
  function showError(text) {
    var box = document.getElementById("dash-community-error");
    box.textContent = text || "";
    box.hidden = !text;
  }
  function manage(action, body) {
    showError("");
    return fetch(base + "/manage/" + action, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(function (doc) {
        if (!r.ok) { showError(doc.message || "Something went wrong"); return null; }
        refresh();
        return doc;
      });
    }).catch(function () { showError("Network error"); return null; });
  }
  function lines(id) {
    return document.getElementById(id).value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean);
  }

  document.getElementById("form-reward").addEventListener("submit", function (ev) {
    ev.preventDefault();
    manage("reward", {
      title: document.getElementById("reward-title").value,
      cost: parseInt(document.getElementById("reward-cost").value, 10) || 0,
      prompt: document.getElementById("reward-prompt").value,
      is_user_input_required: document.getElementById("reward-input").checked,
    }).then(function (doc) { if (doc) document.getElementById("reward-title").value = ""; });
  });
  document.getElementById("form-prediction").addEventListener("submit", function (ev) {
    ev.preventDefault();
    manage("prediction", {
      title: document.getElementById("prediction-title").value, outcomes: lines("prediction-outcomes"),
      prediction_window: parseInt(document.getElementById("prediction-window").value, 10) || 120,
    });
  });
  document.getElementById("form-poll").addEventListener("submit", function (ev) {
    ev.preventDefault();
    manage("poll", {
      title: document.getElementById("poll-title").value, choices: lines("poll-choices"),
      duration: parseInt(document.getElementById("poll-duration").value, 10) || 60,
      channel_points_per_vote: parseInt(document.getElementById("poll-points").value, 10) || 0,
    });
  });

  function renderPrediction(p) {
    var box = document.getElementById("dash-prediction");
    box.textContent = "";
    if (!p) { box.textContent = "No prediction yet."; return; }
    box.appendChild(el("div", "lc-cm-head", p.title + " — " + p.status));
    p.outcomes.forEach(function (o) {
      var row = el("div", "lc-cm-row");
      row.appendChild(el("span", "", o.title + ": " + o.channel_points + " points, " + o.users + " users"));
      if (p.status === "ACTIVE" || p.status === "LOCKED") {
        row.appendChild(button("Resolve: " + o.title, function () {
          manage("prediction-end", { id: p.id, status: "RESOLVED", winning_outcome_id: o.id });
        }));
      }
      box.appendChild(row);
    });
    if (p.status === "ACTIVE") box.appendChild(button("Lock", function () { manage("prediction-end", { id: p.id, status: "LOCKED" }); }));
    if (p.status === "ACTIVE" || p.status === "LOCKED") {
      box.appendChild(button("Cancel and refund", function () { manage("prediction-end", { id: p.id, status: "CANCELED" }); }, "lc-btn-danger"));
    }
  }
  function renderPoll(poll) {
    var box = document.getElementById("dash-poll");
    box.textContent = "";
    if (!poll) { box.textContent = "No poll yet."; return; }
    box.appendChild(el("div", "lc-cm-head", poll.title + " — " + poll.status));
    poll.choices.forEach(function (c) { box.appendChild(el("div", "", c.title + ": " + c.votes + " votes")); });
    if (poll.status === "ACTIVE") box.appendChild(button("End poll", function () { manage("poll-end", { id: poll.id, status: "TERMINATED" }); }));
  }
  function renderQueue(doc) {
    var queue = document.getElementById("dash-queue");
    queue.textContent = "";
    if (!doc.queue.length) queue.appendChild(el("li", "lc-muted", "Nothing waiting."));
    doc.queue.forEach(function (r) {
      var li = el("li");
      li.dataset.redemptionId = r.id;
      li.appendChild(el("span", "", r.user_name + " redeemed " + r.reward.title + (r.user_input ? ": " + r.user_input : "")));
      li.appendChild(button("Fulfil", function () { manage("redemption", { reward_id: r.reward.id, id: r.id, status: "FULFILLED" }); }, "lc-btn-primary"));
      li.appendChild(button("Refund", function () { manage("redemption", { reward_id: r.reward.id, id: r.id, status: "CANCELED" }); }));
      queue.appendChild(li);
    });
    var rewards = document.getElementById("dash-rewards");
    rewards.textContent = "";
    doc.rewards.forEach(function (r) {
      var li = el("li");
      li.appendChild(el("span", "", r.title + " (" + r.cost + ")"));
      li.appendChild(button("Delete", function () { manage("reward-delete", { id: r.id }); }));
      rewards.appendChild(li);
    });
  }

  var pending = null;
  function refresh() {
    if (pending) return pending;
    pending = Promise.all([
      fetch(base + "/manage/queue", { credentials: "same-origin", cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; }),
      fetch(base, { credentials: "same-origin", cache: "no-store" }).then(function (r) { return r.ok ? r.json() : null; }),
    ]).then(function (docs) {
      if (docs[0]) renderQueue(docs[0]);
      if (docs[1]) { renderPrediction(docs[1].prediction); renderPoll(docs[1].poll); }
    }).catch(function () {}).then(function () { pending = null; });
    return pending;
  }
  refresh();
  if (window.EventSource) {
    var timer = null;
    new EventSource(base + "/events").onmessage = function () {
      if (timer) return;
      timer = setTimeout(function () { timer = null; refresh(); }, 250);
    };
  }
})();

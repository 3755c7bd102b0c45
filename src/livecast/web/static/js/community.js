/* Channel points, predictions and polls on the channel page.
 *
 * The first state comes from GET /api/community/{login}; changes arrive as server-sent events
 * from /api/community/{login}/events: a "state" message carries the public part rendered once on
 * the server (new prediction, lock, end, redemptions, reward edits), progress events carry new
 * totals and are applied in place, and only changes to this viewer's own balance or stake make
 * the page fetch /me. User-provided text is only ever set as textContent.
 */
(function () {
  "use strict";
  var root = document.getElementById("community");
  if (!root) return;
  var cfg = JSON.parse(document.getElementById("lc-config").textContent);
  var login = root.dataset.login;
  var base = "/api/community/" + encodeURIComponent(login);
  var state = null;
  var refetching = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function showError(text) {
    var box = document.getElementById("cm-error");
    box.textContent = text || "";
    box.hidden = !text;
  }
  function post(action, body) {
    showError("");
    return fetch(base + "/" + action, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cfg.csrf || "" },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r.json().then(function (doc) {
        if (!r.ok) { showError(doc.message || "Something went wrong"); return null; }
        if (typeof doc.balance === "number") setBalance(doc.balance);
        return doc;
      });
    }).catch(function () { showError("Network error"); return null; });
  }
  function setBalance(value) {
    if (state) state.balance = value;
    document.getElementById("cm-balance").textContent = value === null || value === undefined ? "Sign in for points" : value + " points";
  }

  function renderRewards() {
    var box = document.getElementById("cm-rewards");
    box.textContent = "";
    (state.rewards || []).forEach(function (r) {
      var btn = el("button", "lc-cm-reward");
      btn.type = "button";
      btn.dataset.rewardId = r.id;
      btn.appendChild(el("span", "", r.title));
      btn.appendChild(el("span", "lc-cm-cost", r.cost + " points"));
      btn.disabled = !cfg.viewer || r.is_paused || !r.is_in_stock || (state.balance || 0) < r.cost;
      btn.addEventListener("click", function () {
        var input = "";
        if (r.is_user_input_required) {
          input = window.prompt(r.prompt || r.title) || "";
          if (!input.trim()) return;
        }
        post("redeem", { reward_id: r.id, user_input: input });
      });
      box.appendChild(btn);
    });
  }

  function bars(container, items, total, pick) {
    items.forEach(function (item, i) {
      var row = el("div", "lc-cm-row");
      row.dataset.id = item.id;
      var bar = el("div", "lc-cm-bar");
      var fill = el("div", "lc-cm-fill" + (item.color === "PINK" || item.color === "pink" ? " lc-pink" : ""));
      var value = pick(item);
      fill.style.width = (total ? Math.round(100 * value / total) : 0) + "%";
      bar.appendChild(fill);
      bar.appendChild(el("span", "lc-cm-label", item.title));
      row.appendChild(bar);
      row.appendChild(el("span", "lc-cm-count", item.countText));
      container.appendChild(row);
      item.row = row;
      item.index = i;
    });
  }

  function renderPrediction() {
    var box = document.getElementById("cm-prediction");
    var p = state.prediction;
    box.textContent = "";
    box.hidden = !p || p.status === "CANCELED" && !state.my_bet;
    if (!p) return;
    box.dataset.status = p.status;
    var head = el("div", "lc-cm-head", p.title);
    var label = { ACTIVE: "Predictions open", LOCKED: "Predictions locked", RESOLVED: "Resolved", CANCELED: "Canceled" }[p.status];
    head.appendChild(el("span", "lc-cm-status", label));
    box.appendChild(head);
    var total = p.outcomes.reduce(function (s, o) { return s + o.channel_points; }, 0);
    var items = p.outcomes.map(function (o) {
      return { id: o.id, title: o.title + (p.winning_outcome_id === o.id ? " ✔" : ""), color: o.color,
               countText: o.channel_points + " pts · " + o.users, points: o.channel_points };
    });
    bars(box, items, total, function (o) { return o.points; });
    items.forEach(function (item) {
      if (p.winning_outcome_id === item.id) item.row.classList.add("lc-cm-winner");
      var mine = state.my_bet;
      if (p.status !== "ACTIVE" || !cfg.viewer || cfg.is_owner) return;
      if (mine && mine.outcome_id !== item.id) return;
      var amount = el("input", "lc-input lc-cm-bet");
      amount.type = "number"; amount.min = "1"; amount.value = "10";
      amount.setAttribute("aria-label", "Points on " + item.title);
      var go = el("button", "lc-btn lc-btn-small lc-btn-primary", "Bet");
      go.type = "button";
      go.addEventListener("click", function () {
        post("bet", { prediction_id: p.id, outcome_id: item.id, points: parseInt(amount.value, 10) || 0 })
          .then(function (doc) { if (doc) refetchMine(); });
      });
      item.row.appendChild(amount);
      item.row.appendChild(go);
    });
    if (state.my_bet) {
      var text = "Your prediction: " + state.my_bet.points + " points";
      if (p.status === "RESOLVED") text += state.my_bet.won ? " — you won " + state.my_bet.won + "!" : " — better luck next time";
      if (p.status === "CANCELED") text += " — refunded";
      box.appendChild(el("div", "lc-muted", text));
    }
  }

  function renderPoll() {
    var box = document.getElementById("cm-poll");
    var poll = state.poll;
    box.textContent = "";
    box.hidden = !poll;
    if (!poll) return;
    box.dataset.status = poll.status;
    var head = el("div", "lc-cm-head", poll.title);
    head.appendChild(el("span", "lc-cm-status", poll.status === "ACTIVE" ? "Poll open" : "Poll ended"));
    box.appendChild(head);
    var total = poll.choices.reduce(function (s, c) { return s + c.votes; }, 0);
    var items = poll.choices.map(function (c) {
      return { id: c.id, title: c.title, countText: c.votes + " vote" + (c.votes === 1 ? "" : "s"), votes: c.votes };
    });
    bars(box, items, total, function (c) { return c.votes; });
    if (poll.status !== "ACTIVE" || !cfg.viewer) return;
    var canPay = poll.channel_points_voting_enabled;
    items.forEach(function (item) {
      if (state.my_ballot && !canPay) return;
      var label = state.my_ballot ? "+1 (" + poll.channel_points_per_vote + " pts)" : "Vote";
      var go = el("button", "lc-btn lc-btn-small lc-btn-primary", label);
      go.type = "button";
      go.addEventListener("click", function () {
        post("vote", { poll_id: poll.id, choice_id: item.id, votes: 1 }).then(function (doc) { if (doc) refetchMine(); });
      });
      item.row.appendChild(go);
    });
  }

  function render() {
    setBalance(state.balance);
    renderRewards();
    renderPrediction();
    renderPoll();
  }

  function refetch() {
    if (refetching) return refetching;
    refetching = fetch(base, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) { if (doc) { state = doc; render(); } })
      .catch(function () {})
      .then(function () { refetching = null; });
    return refetching;
  }

  function applyProgress(topic, ev) {
    if (topic === "channel.prediction.progress" && state.prediction && state.prediction.id === ev.id) {
      ev.outcomes.forEach(function (o) {
        state.prediction.outcomes.forEach(function (mine) {
          if (mine.id === o.id) { mine.channel_points = o.channel_points; mine.users = o.users; }
        });
      });
      renderPrediction();
      return true;
    }
    if (topic === "channel.poll.progress" && state.poll && state.poll.id === ev.id) {
      ev.choices.forEach(function (c) {
        state.poll.choices.forEach(function (mine) {
          if (mine.id === c.id) { mine.votes = c.votes; mine.channel_points_votes = c.channel_points_votes; }
        });
      });
      renderPoll();
      return true;
    }
    return false;
  }

  /* Only this viewer's part (balance, stake, ballot): after a change that concerns them. */
  var refreshingMine = null;
  function refetchMine() {
    if (!cfg.viewer) return Promise.resolve();
    if (refreshingMine) return refreshingMine;
    refreshingMine = fetch(base + "/me", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (doc) {
        if (!doc || !state) return;
        state.balance = doc.balance; state.my_bet = doc.my_bet; state.my_ballot = doc.my_ballot;
        render();
      })
      .catch(function () {})
      .then(function () { refreshingMine = null; });
    return refreshingMine;
  }

  /* A new public state, rendered once on the server for every page: keep our own part, unless
     it belonged to a prediction or poll that is no longer the current one. */
  function applyState(pub) {
    var hadBet = state.my_bet, hadBallot = state.my_ballot;
    state.rewards = pub.rewards; state.prediction = pub.prediction; state.poll = pub.poll;
    if (hadBet && (!pub.prediction || hadBet.prediction_id !== pub.prediction.id)) state.my_bet = null;
    if (hadBallot && (!pub.poll || hadBallot.poll_id !== pub.poll.id)) state.my_ballot = null;
    render();
    var settled = state.my_bet && pub.prediction && (pub.prediction.status === "RESOLVED" || pub.prediction.status === "CANCELED");
    if (settled) refetchMine();
  }

  function listen() {
    if (!window.EventSource) return;
    var source = new EventSource(base + "/events");
    source.onmessage = function (msg) {
      var doc;
      try { doc = JSON.parse(msg.data); } catch (e) { return; }
      if (!state) return;
      if (doc.topic === "state") { applyState(doc.state); return; }
      if (applyProgress(doc.topic, doc.event)) return;
      if (doc.topic === "balance" && doc.event.user_id === state.viewer_id) refetchMine();
    };
    source.onopen = function () { refetch(); };  /* after a reconnect, catch up on what was missed */
  }

  document.getElementById("cm-points-toggle").addEventListener("click", function () {
    var box = document.getElementById("cm-rewards");
    box.hidden = !box.hidden;
    this.setAttribute("aria-expanded", String(!box.hidden));
  });
  refetch().then(listen);
  window.livecastCommunityMine = refetchMine;
  window.livecastCommunity = { refetch: refetch, state: function () { return state; } };
})();

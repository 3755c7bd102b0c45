/* Wires the channel page together: player, chat, follow button and the status poll. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("lc-config").textContent);
  var player = new window.LivecastPlayer(document.getElementById("player"), cfg);
  var chat = new window.LivecastChat(document.getElementById("chat"), cfg);
  window.livecast = { player: player, chat: chat, cfg: cfg };
  player.update(cfg.status);
  if (cfg.status === "reconnecting") player.start();
  chat.connect();

  var viewers = document.getElementById("viewer-count");
  var title = document.getElementById("stream-title");
  var clipForm = document.getElementById("clip-form");  // only for signed-in viewers
  var raidBanner = document.getElementById("raid-banner");
  var staleRaid = cfg.raid_done;  // a raid that had already happened when this page was rendered
  /* A raid: a countdown while it is pending, then everyone watching goes to the target. */
  function onRaid(r) {
    if (!r) { raidBanner.hidden = true; return; }
    if (r.in_seconds > 0) {
      raidBanner.hidden = false;
      raidBanner.textContent = "Raiding " + r.to_name + " in " + Math.ceil(r.in_seconds) + " s…";
      return;
    }
    if (r.id === staleRaid) return;
    raidBanner.hidden = false;
    raidBanner.textContent = "Raiding " + r.to_name + "…";
    window.location.href = "/" + encodeURIComponent(r.to_login) + "?referrer=raid";
  }
  function poll() {
    fetch("/web/api/channel/" + encodeURIComponent(cfg.login) + "/status", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        player.update(s.status);
        viewers.hidden = s.status === "offline";
        if (clipForm) clipForm.hidden = s.status === "offline";  // a live clip needs a live stream
        onRaid(s.raid);
        viewers.textContent = s.viewer_count + " viewer" + (s.viewer_count === 1 ? "" : "s");
        if (s.status !== "offline" && s.title) title.textContent = s.title;
      })
      .catch(function () {})
      .then(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 3000);

  /* Count this viewer while the video plays: a playback token, then a heartbeat every interval. */
  var playback = null;
  function heartbeat() {
    var state = document.getElementById("player").dataset.state;
    var watching = state === "playing" || state === "reconnecting";
    var next = playback ? playback.heartbeat_interval * 1000 : 5000;
    var step = !watching ? Promise.resolve() : (playback ? Promise.resolve(playback) : fetch(
      "/api/playback/" + encodeURIComponent(cfg.login) + "/token", { method: "POST", credentials: "same-origin" }
    ).then(function (r) { return r.ok ? r.json() : null; }).then(function (t) { playback = t; return t; }))
      .then(function (t) {
        if (!t) return;
        return fetch("/api/heartbeat", {
          method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ token: t.token }),
        }).then(function (r) { if (r.status === 401) playback = null; });
      });
    step.catch(function () {}).then(function () { setTimeout(heartbeat, watching ? next : 2000); });
  }
  heartbeat();

  var problem = document.getElementById("action-error");
  function showProblem(text) {
    problem.textContent = text;
    problem.hidden = !text;
  }

  var subscribe = document.getElementById("btn-subscribe");
  if (subscribe && subscribe.tagName === "BUTTON") {
    subscribe.addEventListener("click", function () {
      subscribe.disabled = true;
      showProblem("");
      fetch("/web/api/subscribe/" + encodeURIComponent(cfg.login), {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": cfg.csrf },
      }).then(function (r) { return r.json(); }).then(function (body) {
        if (body.redirect) { location.href = body.redirect; return; }
        if (!body.subscribed) throw new Error(body.message || "Subscribing failed");
        subscribe.textContent = "★ Subscribed";
        subscribe.dataset.subscribed = "true";
        subscribe.classList.add("lc-btn-following");
      }).catch(function (e) { showProblem(e.message); subscribe.disabled = false; });
    });
  }

  var follow = document.getElementById("btn-follow");
  if (follow && follow.tagName === "BUTTON") {
    follow.addEventListener("click", function () {
      var on = follow.dataset.following !== "true";
      follow.disabled = true;
      fetch("/web/api/" + (on ? "follow/" : "unfollow/") + encodeURIComponent(cfg.login), {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": cfg.csrf },
      }).then(function (r) { return r.json(); }).then(function (body) {
        if (body.following === undefined) throw new Error(body.message || "failed");
        follow.dataset.following = body.following ? "true" : "false";
        follow.textContent = body.following ? "Following" : "Follow";
        follow.classList.toggle("lc-btn-primary", !body.following);
        follow.classList.toggle("lc-btn-following", body.following);
        document.getElementById("follower-count").textContent = body.followers + " followers";
      }).catch(function (e) { showProblem(e.message); }).then(function () { follow.disabled = false; });
    });
  }
})();

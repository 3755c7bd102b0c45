/* The channel page's player: hls.js in low-latency mode over Livecast's own LL-HLS origin.
 * The page polls the channel's status so the player can tell "the streamer dropped and may
 * come back" (reconnecting) from "the stream ended" (offline) — HLS alone cannot. */
(function (global) {
  "use strict";

  function Player(root, cfg) {
    this.root = root;
    this.cfg = cfg;
    this.video = root.querySelector("#video");
    this.quality = root.querySelector("#quality");
    this.latency = root.querySelector("#latency");
    this.reconnecting = root.querySelector("#player-reconnecting");
    this.offline = root.querySelector("#player-offline");
    this.error = root.querySelector("#player-error");
    this.hls = null;
    this.status = cfg.status;
    this.src = "/hls/" + encodeURIComponent(cfg.login) + "/master.m3u8";
    this.retryTimer = null;
    this.audioOnlyRetries = 0;
    this.bindControls();
  }

  Player.prototype.setState = function (state) {
    this.root.dataset.state = state;
    this.reconnecting.hidden = state !== "reconnecting";
    this.offline.hidden = state !== "offline";
    this.error.hidden = state !== "error";
  };

  Player.prototype.bindControls = function () {
    var self = this;
    var video = this.video;
    var play = this.root.querySelector("#btn-play");
    var mute = this.root.querySelector("#btn-mute");
    var volume = this.root.querySelector("#volume");
    function sync() {
      play.textContent = video.paused ? "▶" : "❚❚";
      mute.dataset.muted = video.muted || video.volume === 0 ? "true" : "false";
      mute.title = video.muted ? "Unmute" : "Mute";
    }
    play.addEventListener("click", function () { if (video.paused) video.play(); else video.pause(); });
    mute.addEventListener("click", function () { video.muted = !video.muted; });
    volume.addEventListener("input", function () { video.volume = +volume.value; video.muted = +volume.value === 0; });
    ["play", "pause", "volumechange"].forEach(function (e) { video.addEventListener(e, sync); });
    this.root.querySelector("#btn-full").addEventListener("click", function () {
      if (document.fullscreenElement) document.exitFullscreen();
      else if (self.root.requestFullscreen) self.root.requestFullscreen();
    });
    this.quality.addEventListener("change", function () {
      if (self.hls) self.hls.currentLevel = parseInt(self.quality.value, 10);
    });
    this.root.querySelector("#live-dot").addEventListener("click", function () {
      if (self.hls && self.hls.liveSyncPosition) video.currentTime = self.hls.liveSyncPosition;
    });
    sync();
    setInterval(function () { self.showLatency(); }, 1000);
  };

  Player.prototype.showLatency = function () {
    var hls = this.hls;
    if (!hls || this.root.dataset.state !== "playing") { this.latency.textContent = "Latency: –"; return; }
    var l = hls.latency;
    if (typeof l === "number" && isFinite(l) && l > 0) {
      this.latency.textContent = "Latency: " + l.toFixed(1) + " s";
      this.latency.dataset.seconds = l.toFixed(2);
    }
  };

  /* A level's label: its NAME, else the rendition folder in its URL ("720p60/playlist.m3u8"). */
  Player.prototype.levelName = function (level, index) {
    if (level.attrs && level.attrs.NAME) return level.attrs.NAME;
    var url = Array.isArray(level.url) ? level.url[0] : (level.url || level.uri || "");
    var m = /\/([^\/?#]+)\/[^\/?#]+\.m3u8/.exec(url);
    var name = m ? decodeURIComponent(m[1]) : "";
    if (name === "source" && level.height) return "Source (" + level.height + "p)";
    if (name) return name;
    if (level.height) return level.height + "p";
    return "Level " + (index + 1);
  };

  Player.prototype.hasVideo = function () {
    return !!this.hls && this.hls.levels.some(function (l) { return !!(l.videoCodec || l.height); });
  };

  Player.prototype.fillQualities = function () {
    var self = this;
    var q = this.quality;
    q.textContent = "";
    var auto = document.createElement("option");
    auto.value = "-1";
    auto.textContent = "Auto";
    q.appendChild(auto);
    this.hls.levels.forEach(function (level, i) {
      var opt = document.createElement("option");
      opt.value = String(i);
      opt.textContent = self.levelName(level, i);
      q.appendChild(opt);
    });
    q.value = "-1";
  };

  Player.prototype.start = function () {
    var self = this;
    this.stop();
    this.setState("loading");
    var video = this.video;
    if (global.Hls && global.Hls.isSupported()) {
      var hls = new global.Hls({ lowLatencyMode: true, backBufferLength: 30, liveDurationInfinity: true,
        manifestLoadingMaxRetry: 2, levelLoadingMaxRetry: 4 });
      this.hls = hls;
      global.lcHls = hls;  // for debugging from the console
      hls.on(global.Hls.Events.MANIFEST_PARSED, function () {
        self.hadVideo = self.hasVideo();
        // Just after going live the origin may list only the renditions that already have a
        // segment (often audio first); hls.js never re-reads the multivariant playlist, so ask
        // again a few times before settling for an audio-only stream.
        if (!self.hadVideo && self.audioOnlyRetries < 6) {
          self.audioOnlyRetries++;
          self.scheduleRetry(1500);
          return;
        }
        self.fillQualities();
        video.play().catch(function () { video.muted = true; video.play().catch(function () {}); });
      });
      hls.on(global.Hls.Events.LEVEL_SWITCHED, function (_e, data) {
        var auto = self.quality.querySelector('option[value="-1"]');
        var level = hls.levels[data.level];
        if (auto) auto.textContent = hls.autoLevelEnabled && level ? "Auto (" + self.levelName(level, data.level) + ")" : "Auto";
      });
      hls.on(global.Hls.Events.FRAG_BUFFERED, function () {
        if (self.status === "live") self.setState("playing");
      });
      hls.on(global.Hls.Events.LEVELS_UPDATED, function () {
        self.fillQualities();
        // hls.js drops a rendition that fails while a stream warms up; if only audio is left of a
        // stream that has video, start over rather than play a black picture.
        if (self.hadVideo && !self.hasVideo()) self.scheduleRetry(1000);
      });
      hls.on(global.Hls.Events.ERROR, function (_e, data) {
        if (global.console) console.warn("hls.js", data.type, data.details, data.fatal ? "(fatal)" : "");
        if (!data.fatal) return;
        if (data.type === global.Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
        // The playlist may not exist yet (just went live) or may be gone: try again while on air.
        self.stop();
        if (self.status !== "offline") self.scheduleRetry(2000);
      });
      hls.loadSource(this.src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = this.src;  // Safari plays LL-HLS natively
      video.addEventListener("playing", function () { self.setState("playing"); }, { once: true });
      video.play().catch(function () {});
    } else {
      this.error.textContent = "This browser cannot play HLS video.";
      this.setState("error");
    }
  };

  Player.prototype.scheduleRetry = function (ms) {
    var self = this;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(function () { if (self.status === "live") self.start(); }, ms);
  };

  Player.prototype.stop = function () {
    clearTimeout(this.retryTimer);
    if (this.hls) { this.hls.destroy(); this.hls = null; }
  };

  /* Called with each status poll: live | reconnecting | offline. */
  Player.prototype.update = function (status) {
    var was = this.status;
    this.status = status;
    if (status === "offline") {
      this.stop();
      this.video.removeAttribute("src");
      this.setState("offline");
    } else if (status === "reconnecting") {
      this.setState("reconnecting");  // keep the player: the same stream continues after a discontinuity
    } else if (status === "live") {
      if (was !== "live") this.audioOnlyRetries = 0;
      if (was !== "live" || !this.hls) this.start();
      else if (this.root.dataset.state === "reconnecting") this.setState("playing");
    }
  };

  global.LivecastPlayer = Player;
})(window);

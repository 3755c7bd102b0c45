/* The channel page's chat panel: a TMI client over WebSocket (subprotocol "irc").
 * Messages the server refuses come back as NOTICEs; the pending local echo is then marked
 * refused with the server's own reason, so a viewer always sees why a message did not go. */
(function (global) {
  "use strict";
  var IRC = global.LivecastIRC;

  var BADGE_NAMES = {
    broadcaster: "Broadcaster", moderator: "Moderator", vip: "VIP", subscriber: "Subscriber",
    partner: "Verified", staff: "Staff", admin: "Admin", global_mod: "Global moderator",
    founder: "Founder", premium: "Prime", turbo: "Turbo",
  };
  var BADGE_ICONS = {
    broadcaster: "◉", moderator: "⚔", vip: "◆", subscriber: "★", partner: "✔", staff: "S",
    admin: "A", global_mod: "G", founder: "F", premium: "P", turbo: "T",
  };
  var DEFAULT_COLORS = ["#FF4A4A", "#4A7CFF", "#3ED13E", "#B22222", "#FF7F50", "#9ACD32", "#FF6A00",
    "#2E8B57", "#DAA520", "#D2691E", "#5F9EA0", "#1E90FF", "#FF69B4", "#8A2BE2", "#00FF7F"];
  // Static SVG markup (no user data), so innerHTML is safe here.
  var ICONS = {
    reply: '<svg viewBox="0 0 20 20" width="14" height="14"><path fill="currentColor" d="M8 5V2L2 8l6 6v-3c4 0 7 1 9 5-1-5-4-9-9-11z"/></svg>',
    "delete": '<svg viewBox="0 0 20 20" width="14" height="14"><path fill="currentColor" d="M7 2h6l1 2h4v2H2V4h4l1-2zm-3 5h12l-1 11H5L4 7z"/></svg>',
    timeout: '<svg viewBox="0 0 20 20" width="14" height="14"><path fill="none" stroke="currentColor" stroke-width="2" d="M10 5v5l3 2"/><circle cx="10" cy="10" r="7.5" fill="none" stroke="currentColor" stroke-width="2"/></svg>',
    ban: '<svg viewBox="0 0 20 20" width="14" height="14"><circle cx="10" cy="10" r="7.5" fill="none" stroke="currentColor" stroke-width="2"/><path stroke="currentColor" stroke-width="2" d="M4.7 4.7l10.6 10.6"/></svg>',
  };
  var REFUSALS = /^(msg_|bad_|no_permission|unrecognized_cmd|invalid_|usage_|cmds_|automod|tos_ban)/;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function nameColor(login, color) {
    if (color && /^#[0-9a-fA-F]{6}$/.test(color)) return color;
    var h = 0;
    for (var i = 0; i < login.length; i++) h = (h * 31 + login.charCodeAt(i)) >>> 0;
    return DEFAULT_COLORS[h % DEFAULT_COLORS.length];
  }

  function Chat(root, cfg) {
    this.root = root;
    this.cfg = cfg;
    this.channel = cfg.login;
    this.log = root.querySelector("#chat-log");
    this.modes = root.querySelector("#chat-modes");
    this.status = root.querySelector("#chat-status");
    this.input = root.querySelector("#chat-input");
    this.send = root.querySelector("#chat-send");
    this.replyBar = root.querySelector("#chat-reply");
    this.replyText = root.querySelector("#chat-reply-text");
    this.room = {};
    this.me = { login: "", badges: [], color: "", displayName: "" };
    this.isMod = false;
    this.replyTo = null;
    this.pending = [];
    this.knownEmotes = {};
    this.retry = 0;
    this.ws = null;
    this.joined = false;
    var self = this;
    root.querySelector("#chat-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      self.submit();
    });
    root.querySelector("#chat-reply-cancel").addEventListener("click", function () { self.setReply(null); });
  }

  Chat.prototype.setStatus = function (text) { if (this.status) this.status.textContent = text; };

  Chat.prototype.connect = function () {
    var self = this;
    this.credentials().then(function (cred) {
      var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
      var ws = new WebSocket(url, "irc");
      self.ws = ws;
      ws.onopen = function () {
        self.raw("CAP REQ :twitch.tv/tags twitch.tv/commands twitch.tv/membership");
        self.raw("PASS " + (cred.token ? "oauth:" + cred.token : "SCHMOOPIIE"));
        self.raw("NICK " + cred.login);
        self.me.login = cred.login;
      };
      ws.onmessage = function (ev) {
        String(ev.data).split(/\r?\n/).forEach(function (line) {
          var msg = IRC.parse(line);
          if (msg) self.handle(msg);
        });
      };
      ws.onclose = function () {
        self.joined = false;
        self.enableInput(false);
        self.setStatus("Disconnected. Reconnecting…");
        var delay = Math.min(30000, 1000 * Math.pow(2, self.retry++));
        setTimeout(function () { self.connect(); }, delay);
      };
    }, function (err) {
      self.setStatus("Chat unavailable: " + err.message + ". Retrying…");
      setTimeout(function () { self.connect(); }, 5000);
    });
  };

  /* Signed-in viewers get a short-lived chat token; everybody else reads as justinfan. */
  Chat.prototype.credentials = function () {
    if (!this.cfg.viewer) {
      return Promise.resolve({ login: "justinfan" + Math.floor(10000 + Math.random() * 89999), token: "" });
    }
    return fetch("/web/chat-token", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": this.cfg.csrf },
    }).then(function (r) {
      if (!r.ok) throw new Error("could not get a chat token (" + r.status + ")");
      return r.json();
    });
  };

  Chat.prototype.raw = function (line) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(line + "\r\n"); return true; }
    return false;
  };

  Chat.prototype.enableInput = function (on) {
    if (!this.input) return;
    this.input.disabled = !on;
    this.send.disabled = !on;
  };

  Chat.prototype.handle = function (msg) {
    var p = msg.params;
    switch (msg.command) {
      case "PING": this.raw("PONG :" + (p[0] || "tmi.twitch.tv")); break;
      case "001": this.raw("JOIN #" + this.channel); break;
      case "JOIN":
        if (msg.nick === this.me.login) {
          this.joined = true;
          this.retry = 0;
          this.setStatus(this.cfg.viewer ? "Connected as " + this.me.login : "Watching chat anonymously");
          this.enableInput(!!this.cfg.viewer);
          this.system("Welcome to the chat room!");
        }
        break;
      case "ROOMSTATE": this.roomState(msg.tags); break;
      case "USERSTATE": case "GLOBALUSERSTATE": this.userState(msg); break;
      case "PRIVMSG": this.message(msg); break;
      case "USERNOTICE":
        this.system(msg.tags["system-msg"] || "", "lc-chat-usernotice");
        if (p[1]) this.message(msg);
        break;
      case "NOTICE": this.notice(msg); break;
      case "CLEARMSG": this.clearMessage(msg.tags["target-msg-id"]); break;
      case "CLEARCHAT": this.clearChat(msg); break;
      case "RECONNECT": if (this.ws) this.ws.close(); break;
      default: break;
    }
  };

  Chat.prototype.userState = function (msg) {
    var tags = msg.tags;
    this.me.badges = IRC.badges(tags.badges);
    this.me.color = tags.color || "";
    this.me.displayName = tags["display-name"] || this.me.login;
    var names = this.me.badges.map(function (b) { return b[0]; });
    this.isMod = tags.mod === "1" || names.indexOf("moderator") >= 0 || names.indexOf("broadcaster") >= 0;
    this.root.classList.toggle("lc-chat-is-mod", this.isMod);
    if (msg.command === "USERSTATE" && this.pending.length) {
      var ok = this.pending.shift();
      this.confirm(ok, tags.id);
    }
  };

  Chat.prototype.roomState = function (tags) {
    var keys = ["slow", "subs-only", "emote-only", "followers-only", "r9k"];
    for (var i = 0; i < keys.length; i++) if (tags[keys[i]] !== undefined) this.room[keys[i]] = tags[keys[i]];
    var banners = [];
    var slow = parseInt(this.room.slow || "0", 10);
    if (slow > 0) banners.push(["slow", "Slow mode: one message every " + slow + "s"]);
    if (this.room["subs-only"] === "1") banners.push(["subs-only", "Subscriber-only chat"]);
    if (this.room["emote-only"] === "1") banners.push(["emote-only", "Emote-only chat"]);
    var fo = parseInt(this.room["followers-only"] === undefined ? "-1" : this.room["followers-only"], 10);
    if (fo === 0) banners.push(["followers-only", "Followers-only chat"]);
    else if (fo > 0) banners.push(["followers-only", "Followers-only chat (" + fo + " min)"]);
    if (this.room.r9k === "1") banners.push(["r9k", "Unique-chat mode"]);
    this.modes.textContent = "";
    var self = this;
    banners.forEach(function (b) {
      var span = el("span", "lc-chat-mode lc-chat-mode-" + b[0], b[1]);
      span.dataset.mode = b[0];
      self.modes.appendChild(span);
    });
    this.modes.hidden = banners.length === 0;
  };

  Chat.prototype.notice = function (msg) {
    var id = msg.tags["msg-id"] || "";
    var text = msg.params[msg.params.length - 1] || "";
    if (REFUSALS.test(id) && this.pending.length) {
      var refused = this.pending.shift();
      refused.classList.remove("lc-chat-pending");
      refused.classList.add("lc-chat-refused");
      refused.title = text;
      var why = el("div", "lc-chat-refusal", "Not sent: " + text);
      why.dataset.msgId = id;
      refused.appendChild(why);
      return;  // the reason shows under the refused message itself
    }
    var line = this.system(text, "lc-chat-notice");
    line.dataset.msgId = id;
  };

  Chat.prototype.clearMessage = function (id) {
    if (!id) return;
    var node = this.log.querySelector('[data-id="' + CSS.escape(id) + '"]');
    if (node) this.markDeleted(node);
  };

  Chat.prototype.markDeleted = function (node) {
    if (node.classList.contains("lc-chat-deleted")) return;
    node.classList.add("lc-chat-deleted");
    var body = node.querySelector(".lc-chat-text");
    if (body) { body.dataset.original = body.textContent; body.textContent = "<message deleted>"; }
  };

  Chat.prototype.clearChat = function (msg) {
    var target = msg.params[1];
    var self = this;
    if (!target) {
      Array.prototype.forEach.call(this.log.querySelectorAll(".lc-chat-msg"), function (n) { self.markDeleted(n); });
      this.system("Chat was cleared by a moderator.");
      return;
    }
    var uid = msg.tags["target-user-id"];
    Array.prototype.forEach.call(this.log.querySelectorAll(".lc-chat-msg"), function (n) {
      if (n.dataset.login === target || (uid && n.dataset.userId === uid)) self.markDeleted(n);
    });
    var secs = msg.tags["ban-duration"];
    this.system(secs ? target + " has been timed out for " + secs + " seconds." : target + " has been banned.");
  };

  Chat.prototype.append = function (node) {
    var stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 60;
    this.log.appendChild(node);
    while (this.log.childNodes.length > 300) this.log.removeChild(this.log.firstChild);
    if (stick) this.log.scrollTop = this.log.scrollHeight;
  };

  Chat.prototype.system = function (text, cls) {
    var line = el("div", "lc-chat-line lc-chat-system " + (cls || ""), text);
    this.append(line);
    return line;
  };

  Chat.prototype.emoteImage = function (id, code) {
    var img = el("img", "lc-emote");
    img.src = this.cfg.emote_url.replace("{id}", encodeURIComponent(id)).replace("{size}", "1.0");
    img.alt = code;
    img.title = code;
    img.dataset.emoteId = id;
    return img;
  };

  Chat.prototype.render = function (opts) {
    var self = this;
    var line = el("div", "lc-chat-line lc-chat-msg");
    if (opts.id) line.dataset.id = opts.id;
    line.dataset.login = opts.login;
    if (opts.userId) line.dataset.userId = opts.userId;
    if (opts.replyName) {
      var ctx = el("div", "lc-chat-replyctx", "↪ Replying to @" + opts.replyName + ": " + (opts.replyBody || ""));
      line.appendChild(ctx);
    }
    var head = el("span", "lc-chat-head-line");
    opts.badges.forEach(function (b) {
      var badge = el("span", "lc-badge lc-badge-" + b[0].replace(/[^a-z0-9_-]/gi, ""), BADGE_ICONS[b[0]] || "•");
      badge.title = (BADGE_NAMES[b[0]] || b[0]) + (b[0] === "subscriber" && b[1] ? " (" + b[1] + " months)" : "");
      badge.dataset.badge = b[0];
      head.appendChild(badge);
    });
    var name = el("span", "lc-chat-name", opts.displayName);
    name.style.color = nameColor(opts.login, opts.color);
    head.appendChild(name);
    line.appendChild(head);
    var parsed = IRC.action(opts.text);
    if (!parsed.action) line.appendChild(document.createTextNode(": "));
    else { line.classList.add("lc-chat-action"); line.appendChild(document.createTextNode(" ")); }
    var body = el("span", "lc-chat-text");
    if (parsed.action) body.style.color = name.style.color;
    // Emote positions count code points of the whole text; an ACTION's prefix shifts them.
    var shift = parsed.action ? Array.from("\u0001ACTION ").length : 0;
    var emotes = IRC.emotes(opts.emotes).map(function (e) {
      return { id: e.id, start: e.start - shift, end: e.end - shift };
    });
    IRC.splitEmotes(parsed.text, emotes).forEach(function (piece) {
      body.appendChild(piece.emote ? self.emoteImage(piece.emote, piece.code) : document.createTextNode(piece.text));
    });
    line.appendChild(body);
    var tools = el("span", "lc-chat-tools");
    if (opts.id) {
      var reply = el("button", "lc-chat-tool lc-chat-reply-btn");
      reply.innerHTML = ICONS.reply;
      reply.type = "button";
      reply.title = "Reply";
      reply.addEventListener("click", function () {
        self.setReply({ id: opts.id, name: opts.displayName, text: parsed.text });
      });
      tools.appendChild(reply);
    }
    if (opts.id && opts.login !== this.me.login) {
      [["delete", "Delete message", function () { return "/delete " + opts.id; }],
       ["timeout", "Timeout 10 minutes", function () { return "/timeout " + opts.login + " 600"; }],
       ["ban", "Ban user", function () { return "/ban " + opts.login; }]].forEach(function (a) {
        var b = el("button", "lc-chat-tool lc-chat-mod lc-chat-mod-" + a[0]);
        b.innerHTML = ICONS[a[0]];
        b.type = "button";
        b.title = a[1];
        b.setAttribute("aria-label", a[1]);
        b.dataset.action = a[0];
        b.addEventListener("click", function () { self.raw(IRC.format("PRIVMSG", ["#" + self.channel, a[2]()])); });
        tools.appendChild(b);
      });
    }
    line.appendChild(tools);
    this.append(line);
    return line;
  };

  /* Emote codes seen in others' messages, so a local echo can show the same images. */
  Chat.prototype.learnEmotes = function (text, emotesTag) {
    var chars = Array.from(text);
    var known = this.knownEmotes;
    IRC.emotes(emotesTag).forEach(function (e) {
      var code = chars.slice(e.start, e.end + 1).join("");
      if (code && Object.keys(known).length < 500) known[code] = e.id;
    });
  };

  /* An emotes tag for our own text from the codes we know, as the server would compute it. */
  Chat.prototype.guessEmotes = function (text) {
    var known = this.knownEmotes;
    var found = {};
    var at = 0;
    text.split(" ").forEach(function (word) {
      var len = Array.from(word).length;
      if (Object.prototype.hasOwnProperty.call(known, word)) {
        (found[known[word]] = found[known[word]] || []).push(at + "-" + (at + len - 1));
      }
      at += len + 1;
    });
    return Object.keys(found).map(function (id) { return id + ":" + found[id].join(","); }).join("/");
  };

  Chat.prototype.message = function (msg) {
    var tags = msg.tags;
    if (tags.emotes) this.learnEmotes(msg.params[1] || "", tags.emotes);
    var login = tags.login || msg.nick;
    this.render({
      id: tags.id, login: login, userId: tags["user-id"], displayName: tags["display-name"] || login,
      color: tags.color, badges: IRC.badges(tags.badges), emotes: tags.emotes,
      text: msg.params[1] || "", replyName: tags["reply-parent-display-name"],
      replyBody: tags["reply-parent-msg-body"],
    });
  };

  Chat.prototype.setReply = function (target) {
    this.replyTo = target;
    this.replyBar.hidden = !target;
    if (target) {
      this.replyText.textContent = "Replying to @" + target.name + ": " + target.text;
      if (this.input) this.input.focus();
    }
  };

  Chat.prototype.submit = function () {
    if (!this.input || !this.joined) return;
    var text = this.input.value.replace(/^\s+|\s+$/g, "");
    if (!text) return;
    var tags = null;
    var wire = text;
    var me = /^\/me\s+(.+)$/i.exec(text);
    if (me) wire = "\u0001ACTION " + me[1] + "\u0001";
    if (this.replyTo) tags = { "reply-parent-msg-id": this.replyTo.id };
    if (!this.raw(IRC.format("PRIVMSG", ["#" + this.channel, wire], tags))) return;
    this.input.value = "";
    if (text[0] === "/" && !me) { this.setReply(null); return; }  // a command: the server answers
    // Twitch does not echo a sender's own PRIVMSG: show it now, confirmed by USERSTATE or refused by NOTICE.
    var line = this.render({
      login: this.me.login, displayName: this.me.displayName || this.me.login, color: this.me.color,
      badges: this.me.badges, text: wire, emotes: this.guessEmotes(wire),
      replyName: this.replyTo && this.replyTo.name, replyBody: this.replyTo && this.replyTo.text,
    });
    line.classList.add("lc-chat-pending", "lc-chat-own");
    this.pending.push(line);
    var self = this;
    setTimeout(function () {
      var i = self.pending.indexOf(line);
      if (i >= 0) { self.pending.splice(i, 1); self.confirm(line, ""); }
    }, 4000);
    this.setReply(null);
  };

  Chat.prototype.confirm = function (line, id) {
    line.classList.remove("lc-chat-pending");
    if (id) line.dataset.id = id;
  };

  global.LivecastChat = Chat;
})(window);

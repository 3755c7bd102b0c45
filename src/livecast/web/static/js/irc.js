/* IRC lines with IRCv3 tags, as Twitch's TMI speaks them: parse and format, no I/O.
 * Kept apart from the chat panel so the parsing can be read (and tested) on its own. */
(function (global) {
  "use strict";

  var TAG_ESCAPES = { ":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n" };

  function unescapeTag(value) {
    var out = "";
    for (var i = 0; i < value.length; i++) {
      var ch = value[i];
      if (ch === "\\") {
        var next = value[i + 1];
        if (next === undefined) break;
        out += Object.prototype.hasOwnProperty.call(TAG_ESCAPES, next) ? TAG_ESCAPES[next] : next;
        i++;
      } else {
        out += ch;
      }
    }
    return out;
  }

  function escapeTag(value) {
    return String(value).replace(/\\/g, "\\\\").replace(/;/g, "\\:").replace(/ /g, "\\s")
      .replace(/\r/g, "\\r").replace(/\n/g, "\\n");
  }

  /* One line (without CRLF) -> {tags, prefix, nick, command, params}; null if empty. */
  function parse(line) {
    var rest = line.replace(/[\r\n]+$/, "");
    if (!rest) return null;
    var msg = { raw: rest, tags: {}, prefix: "", nick: "", command: "", params: [] };
    if (rest[0] === "@") {
      var sp = rest.indexOf(" ");
      if (sp < 0) return null;
      rest.slice(1, sp).split(";").forEach(function (pair) {
        if (!pair) return;
        var eq = pair.indexOf("=");
        if (eq < 0) msg.tags[pair] = "";
        else msg.tags[pair.slice(0, eq)] = unescapeTag(pair.slice(eq + 1));
      });
      rest = rest.slice(sp + 1).replace(/^ +/, "");
    }
    if (rest[0] === ":") {
      var sp2 = rest.indexOf(" ");
      if (sp2 < 0) return null;
      msg.prefix = rest.slice(1, sp2);
      msg.nick = msg.prefix.split("!")[0].split("@")[0];
      rest = rest.slice(sp2 + 1).replace(/^ +/, "");
    }
    while (rest) {
      if (rest[0] === ":") { msg.params.push(rest.slice(1)); break; }
      var sp3 = rest.indexOf(" ");
      var word = sp3 < 0 ? rest : rest.slice(0, sp3);
      if (!msg.command) msg.command = word.toUpperCase(); else msg.params.push(word);
      rest = sp3 < 0 ? "" : rest.slice(sp3 + 1).replace(/^ +/, "");
    }
    return msg.command ? msg : null;
  }

  /* "moderator/1,subscriber/12" -> [["moderator","1"],["subscriber","12"]] */
  function badges(value) {
    if (!value) return [];
    return value.split(",").filter(Boolean).map(function (b) {
      var slash = b.indexOf("/");
      return slash < 0 ? [b, ""] : [b.slice(0, slash), b.slice(slash + 1)];
    });
  }

  /* The emotes tag -> [{id, start, end}] sorted by start; positions count code points. */
  function emotes(value) {
    var list = [];
    if (!value) return list;
    value.split("/").forEach(function (part) {
      var colon = part.indexOf(":");
      if (colon < 0) return;
      var id = part.slice(0, colon);
      part.slice(colon + 1).split(",").forEach(function (range) {
        var m = /^(\d+)-(\d+)$/.exec(range);
        if (m) list.push({ id: id, start: +m[1], end: +m[2] });
      });
    });
    list.sort(function (a, b) { return a.start - b.start; });
    return list;
  }

  /* Text -> [{text}|{emote, code}] pieces, cutting at the emote positions (code points). */
  function splitEmotes(text, emoteList) {
    var chars = Array.from(text);
    var out = [];
    var at = 0;
    emoteList.forEach(function (e) {
      if (e.start < at || e.end >= chars.length || e.end < e.start) return;
      if (e.start > at) out.push({ text: chars.slice(at, e.start).join("") });
      out.push({ emote: e.id, code: chars.slice(e.start, e.end + 1).join("") });
      at = e.end + 1;
    });
    if (at < chars.length) out.push({ text: chars.slice(at).join("") });
    return out;
  }

  /* "\x01ACTION waves\x01" -> {action: true, text: "waves"} */
  function action(text) {
    var m = /^\u0001ACTION (.*?)\u0001?$/.exec(text);
    return m ? { action: true, text: m[1] } : { action: false, text: text };
  }

  function format(command, params, tags) {
    var line = "";
    if (tags) {
      var parts = Object.keys(tags).map(function (k) { return k + "=" + escapeTag(tags[k]); });
      if (parts.length) line += "@" + parts.join(";") + " ";
    }
    line += command;
    params = params || [];
    for (var i = 0; i < params.length; i++) {
      var p = String(params[i]).replace(/[\r\n]/g, " ");
      var last = i === params.length - 1;
      var trailing = last && (command === "PRIVMSG" || p === "" || p.indexOf(" ") >= 0 || p[0] === ":");
      line += trailing ? " :" + p : " " + p;
    }
    return line;
  }

  global.LivecastIRC = {
    parse: parse, format: format, badges: badges, emotes: emotes, splitEmotes: splitEmotes,
    action: action, unescapeTag: unescapeTag, escapeTag: escapeTag,
  };
})(window);

// tmi.js as a viewer behind a Livecast edge, for tests/test_cluster.py: it follows RECONNECT
// (tmi.js reconnects to the same address, which the edge sends to a live chat process).
// Prints one JSON object per line; reads {"op": "say", "text": ...} lines on stdin.
'use strict';
const path = require('path');
const readline = require('readline');
const tmi = require(path.join(__dirname, '..', '..', 'node_modules', 'tmi.js'));

const [port, username, token, channel] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const client = new tmi.Client({
  options: { debug: false, skipUpdatingEmotesets: true },
  connection: { server: '127.0.0.1', port: Number(port), secure: false, reconnect: true, reconnectInterval: 500 },
  identity: { username, password: `oauth:${token}` },
  channels: [channel],
  logger: { info() {}, warn() {}, error(m) { process.stderr.write(String(m) + '\n'); } },
});

client.on('message', (ch, tags, message, self) => out({ event: 'message', message, self }));
client.on('join', (ch, user, self) => { if (self) out({ event: 'joined' }); });
client.on('disconnected', (reason) => out({ event: 'disconnected', reason: String(reason) }));

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const cmd = JSON.parse(line);
  try {
    if (cmd.op === 'say') await client.say(channel, cmd.text);
    out({ event: 'result', op: cmd.op, ok: true });
  } catch (err) {
    out({ event: 'result', op: cmd.op, ok: false, error: String(err) });
  }
});
client.connect().catch((err) => { out({ event: 'error', error: String(err) }); process.exit(1); });

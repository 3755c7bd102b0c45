// Drives tmi.js against Livecast chat over WebSocket. Prints one JSON object per line on stdout;
// reads commands (one JSON object per line) on stdin from the pytest test that runs it.
'use strict';
const path = require('path');
const readline = require('readline');
const tmi = require(path.join(__dirname, '..', '..', 'node_modules', 'tmi.js'));

const [port, username, token, channel] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const client = new tmi.Client({
  options: { debug: false, skipUpdatingEmotesets: true, skipMembership: false },
  connection: { server: '127.0.0.1', port: Number(port), secure: false, reconnect: false },
  identity: { username, password: `oauth:${token}` },
  channels: [channel],
  logger: { info() {}, warn() {}, error(m) { process.stderr.write(String(m) + '\n'); } },
});

client.on('message', (ch, tags, message, self) => out({ event: 'message', channel: ch, tags, message, self }));
client.on('roomstate', (ch, state) => out({ event: 'roomstate', channel: ch, state }));
client.on('timeout', (ch, user, reason, duration) => out({ event: 'timeout', channel: ch, user, duration }));
client.on('join', (ch, user, self) => { if (self) out({ event: 'joined', channel: ch }); });

const run = async (cmd) => {
  try {
    let result;
    if (cmd.op === 'say') result = await client.say(channel, cmd.text);
    else if (cmd.op === 'timeout') result = await client.timeout(channel, cmd.user, cmd.seconds, cmd.reason);
    else if (cmd.op === 'slow') result = await client.slow(channel, cmd.seconds);
    else if (cmd.op === 'quit') { await client.disconnect(); process.exit(0); }
    out({ event: 'result', op: cmd.op, ok: true, result });
  } catch (err) {
    out({ event: 'result', op: cmd.op, ok: false, error: String(err) });
  }
};

client.connect().then(() => out({ event: 'connected' })).catch((err) => {
  out({ event: 'error', error: String(err) });
  process.exit(1);
});
readline.createInterface({ input: process.stdin }).on('line', (line) => run(JSON.parse(line)));

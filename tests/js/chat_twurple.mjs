// Drives twurple's ChatClient (@twurple/chat) against Livecast chat over plain TCP, anonymously.
// twurple takes a host name but no port (6667 for plain IRC), and validates a user's token at
// id.twitch.tv, so it reads as justinfan: the way overlays and chat loggers use it.
// Prints one JSON object per line on stdout for the pytest test that runs it.
import { ChatClient } from '@twurple/chat';

const [channel] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const chat = new ChatClient({
  channels: [channel], hostName: '127.0.0.1', webSocket: false, ssl: false,
  // twurple logs to stdout, which carries this script's JSON lines: its log goes to stderr.
  logger: { minLevel: process.env.TW_LOG ?? 'warning', custom: (level, message) => process.stderr.write(`${message}\n`) },
});
chat.onConnect(() => out({ event: 'connected' }));
chat.onJoin((ch, user) => out({ event: 'joined', channel: ch, user }));
chat.onMessage((ch, user, text, msg) => out({
  event: 'message', channel: ch, user, text, id: msg.id, channelId: msg.channelId,
  userId: msg.userInfo.userId, displayName: msg.userInfo.displayName, isBroadcaster: msg.userInfo.isBroadcaster,
  isMod: msg.userInfo.isMod, badges: Object.fromEntries(msg.userInfo.badges), color: msg.userInfo.color ?? null,
  emotes: Object.fromEntries(msg.emoteOffsets), isReply: msg.isReply, parentMessageId: msg.parentMessageId ?? null,
}));
chat.onAction((ch, user, text) => out({ event: 'action', channel: ch, user, text }));
chat.onTimeout((ch, user, duration) => out({ event: 'timeout', channel: ch, user, duration }));
chat.onMessageRemove((ch, messageId) => out({ event: 'removed', channel: ch, messageId }));
chat.onSlow((ch, enabled, delay) => out({ event: 'slow', channel: ch, enabled, delay: delay ?? null }));
chat.onDisconnect((manually, reason) => out({ event: 'disconnected', manually, reason: String(reason ?? '') }));
chat.connect();

// Drives twurple (@twurple/api, @twurple/eventsub-ws) against Livecast through twurple's mock
// layout: TWURPLE_MOCK_API_PORT names Livecast's HTTP port. Prints KEY JSON lines for pytest.
import { ApiClient } from '@twurple/api';
import { EventSubWsListener } from '@twurple/eventsub-ws';

const port = process.env.TWURPLE_MOCK_API_PORT;
const clientId = process.env.LIVECAST_CLIENT_ID;
const token = process.env.LIVECAST_TOKEN;
const userId = process.env.LIVECAST_USER;

// twurple's StaticAuthProvider validates tokens against id.twitch.tv; this provider asks
// Livecast's /auth/validate (the mock layout's auth alias) instead.
const info = await (await fetch(`http://127.0.0.1:${port}/auth/validate`, {
  headers: { Authorization: `OAuth ${token}` },
})).json();
const accessToken = {
  accessToken: token, refreshToken: null, scope: info.scopes, expiresIn: null,
  obtainmentTimestamp: Date.now(), userId: info.user_id,
};
const authProvider = {
  clientId,
  getCurrentScopesForUser: () => info.scopes,
  getAccessTokenForUser: async () => accessToken,
  getAccessTokenForIntent: async () => accessToken,
  getAnyAccessToken: async () => accessToken,
};

const api = new ApiClient({ authProvider, mockServerPort: Number(port) });
const users = await api.users.getUsersByNames(['alice', 'bob']);
console.log('USERS ' + JSON.stringify(users.map((u) => u.name)));
const streams = await api.streams.getStreams({ limit: 10 });
console.log('STREAMS ' + JSON.stringify(streams.data.map((s) => [s.userName, s.viewers, s.title])));
await api.channels.updateChannelInfo(userId, { title: 'twurple title' });
const channel = await api.channels.getChannelInfoById(userId);
console.log('CHANNEL ' + JSON.stringify(channel.title));

const listener = new EventSubWsListener({ apiClient: api });
const done = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no stream.online within 20 s')), 20000);
  listener.onStreamOnline(userId, (event) => {
    clearTimeout(timer);
    console.log('ONLINE ' + JSON.stringify({ login: event.broadcasterName, type: event.type }));
    resolve();
  });
});
listener.onSubscriptionCreateSuccess(() => console.log('SUBSCRIBED'));
listener.onSubscriptionCreateFailure((sub, err) => { console.log('FAILED ' + JSON.stringify(String(err))); process.exit(2); });
listener.start();
await done;
listener.stop();
process.exit(0);

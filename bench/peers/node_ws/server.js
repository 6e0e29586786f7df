'use strict';
/*
 * The benchmark's node.js peer: a plain subscribe-and-forward WebSocket server.
 *
 * node.js was the platform of the original pushy, and `ws` is that ecosystem's
 * fastest common WebSocket library. This server speaks pushy's wire protocol v1
 * (docs/protocol.md) and nothing more: subscribe, unsubscribe and ping are
 * answered; each update PUBLISHed on CHANNEL_PREFIX* goes to the subscribers of
 * its `url` and of its `collection` (once to a client subscribed to both), as
 * the frame pushy's gateway would send: the Redis body's fields in wire order
 * after "type":"update", compact JSON, encoded once per update. No origin check,
 * no session, no authorization, no heartbeat, no bound on what waits for a slow
 * client: the same bare job as bench/floor.py, on node.js.
 *
 *     node server.js --port PORT --redis redis://127.0.0.1:6379/0 [--prefix pushy_]
 */

const { WebSocketServer, WebSocket } = require('ws');
const Redis = require('ioredis');

// The optional fields of an update, in the order pushy's gateway writes them
// (pushy/messages.py, Update.as_dict); url, event, model and pk come first.
const OPTIONAL = ['collection', 'data', 'version'];

const subscribers = new Map(); // url -> Set of WebSocket

function options(argv) {
  const found = { prefix: 'pushy_' };
  for (let i = 0; i < argv.length; i += 2) {
    found[argv[i].replace(/^--/, '')] = argv[i + 1];
  }
  if (!found.port || !found.redis) {
    throw new Error('usage: node server.js --port PORT --redis URL [--prefix P]');
  }
  return found;
}

function subscribe(ws, url) {
  let set = subscribers.get(url);
  if (set === undefined) {
    set = new Set();
    subscribers.set(url, set);
  }
  set.add(ws);
  ws.urls.add(url);
}

function unsubscribe(ws, url) {
  const set = subscribers.get(url);
  if (set !== undefined) {
    set.delete(ws);
    if (set.size === 0) subscribers.delete(url);
  }
  ws.urls.delete(url);
}

function reply(ws, text) {
  let request;
  try {
    request = JSON.parse(text);
  } catch (e) {
    return { type: 'error', code: 'invalid', message: 'not JSON' };
  }
  const action = request && request.action;
  const url = request && request.url;
  if (action === 'ping') return { type: 'pong' };
  if (action === 'subscribe' && typeof url === 'string' && url) {
    subscribe(ws, url);
    return { type: 'subscribed', url };
  }
  if (action === 'unsubscribe' && typeof url === 'string' && url) {
    unsubscribe(ws, url);
    return { type: 'unsubscribed', url };
  }
  return { type: 'error', code: 'invalid', message: 'unknown request' };
}

/* The update a Redis body holds, as the frame's text and its two URLs; null
 * for anything that is not an update. */
function decode(body) {
  let update;
  try {
    update = JSON.parse(body);
  } catch (e) {
    return null;
  }
  if (!update || typeof update !== 'object' || typeof update.url !== 'string') {
    return null;
  }
  const message = {
    type: 'update',
    url: update.url,
    event: update.event,
    model: update.model,
    pk: update.pk,
  };
  for (const key of OPTIONAL) {
    if (update[key] !== undefined && update[key] !== null) message[key] = update[key];
  }
  const collection = typeof update.collection === 'string' ? update.collection : null;
  return { url: update.url, collection, text: Buffer.from(JSON.stringify(message)) };
}

function forward(update) {
  const own = subscribers.get(update.url);
  const collection = update.collection && subscribers.get(update.collection);
  const send = (ws) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(update.text, { binary: false });
  };
  if (collection) collection.forEach(send);
  if (own) {
    own.forEach((ws) => {
      if (!collection || !collection.has(ws)) send(ws);
    });
  }
}

function listen(redisUrl, prefix, ready) {
  const redis = new Redis(redisUrl, { lazyConnect: false });
  redis.on('error', (error) => console.error('redis:', error.message));
  redis.on('pmessage', (pattern, channel, body) => {
    // CHANNEL_PREFIX + ":..." channels carry pushy's control messages.
    if (channel.charAt(prefix.length) === ':') return;
    const update = decode(body);
    if (update !== null) forward(update);
  });
  redis.psubscribe(prefix + '*').then(ready, (error) => {
    console.error('psubscribe failed:', error.message);
    process.exit(1);
  });
}

function serve(port, ready) {
  // perMessageDeflate off: pushy's gateway offers no compression either.
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port,
    perMessageDeflate: false,
    clientTracking: false,
  });
  server.on('connection', (ws) => {
    ws.urls = new Set();
    ws.on('message', (data) => ws.send(JSON.stringify(reply(ws, data.toString()))));
    ws.on('close', () => {
      for (const url of [...ws.urls]) unsubscribe(ws, url);
    });
    ws.on('error', () => {}); // a reset client: 'close' follows and cleans up
  });
  server.on('listening', ready);
}

function main() {
  const args = options(process.argv.slice(2));
  let waiting = 2;
  const ready = () => {
    waiting -= 1;
    if (waiting === 0) console.log(`node ws listening on ${args.port}`);
  };
  listen(args.redis, args.prefix, ready);
  serve(Number(args.port), ready);
  process.on('SIGTERM', () => process.exit(0));
}

main();

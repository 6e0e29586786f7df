/*
 * pushy.js: the browser client of django-pushy (wire protocol v1, docs/protocol.md).
 *
 *   pushy = new PushyApp;
 *   pushy.socket_url = 'http://localhost:8888/';
 *   pushy.debug = true;
 *   pushy.init();
 *   pushy.subscribe('/api/v1/shot/1/', function (update) { ... });
 *   pushy.presence('/api/v1/shot/1/', function (people, count, detail) { ... });
 *
 * No dependencies and no build step. Loaded by {% pushy_scripts %}, it reads its
 * configuration from its own <script> tag's data attributes and leaves a started
 * PushyApp in the global `pushy`, so no inline script is needed (CSP-safe).
 */
(function (global) {
  "use strict";

  const CONNECTING = "connecting";
  const OPEN = "open";
  const RECONNECTING = "reconnecting";
  const CLOSED = "closed";
  // Attempts in a row that never opened before the client waits near its cap.
  const REFUSALS_BEFORE_CAP = 3;
  // Close codes that mean the gateway ended the connection for a reason a
  // developer should see (protocol, policy, size, internal error, too slow).
  const ERROR_CLOSES = new Set([1002, 1003, 1007, 1008, 1009, 1011]);

  /* SOCKET_SERVER (http[s]://host/prefix/) -> the endpoint ws[s]://host/prefix/ws.
   * A ws:// or wss:// URL is taken to be the endpoint already. */
  function websocketUrl(socketUrl) {
    const base = global.location ? global.location.href : undefined;
    const url = new URL(socketUrl, base);
    if (url.protocol === "ws:" || url.protocol === "wss:") {
      return url.href;
    }
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (!url.pathname.endsWith("/")) {
      url.pathname += "/";
    }
    url.pathname += "ws";
    url.search = "";
    url.hash = "";
    return url.href;
  }

  /* A callback that throws must not stop the others, nor vanish: report it
   * as an uncaught error, outside our loop. */
  function safeCall(callback, value) {
    try {
      callback(value);
    } catch (error) {
      setTimeout(function () {
        throw error;
      }, 0);
    }
  }

  /* A presence callback gets (people, count, detail); see presence(). */
  function callPresence(callback, detail) {
    safeCall((value) => callback(value.people, value.count, value), detail);
  }

  class PushyApp {
    constructor() {
      // The original API's public settings; set them before init().
      this.socket_url = "http://localhost:8888/";
      this.debug = false;
      // Reconnection: full-jitter exponential backoff, in seconds.
      this.reconnect_base = 0.5;
      this.reconnect_cap = 10;
      // A connection open this long resets the backoff.
      this.stable_after = 60;
      // App-level heartbeat: a ping every ping_interval, the connection is taken
      // for dead when nothing arrives within pong_timeout of it.
      this.ping_interval = 25;
      this.pong_timeout = 10;
      // Quiet reconnects: updates of one URL within an animation frame reach a
      // callback once (the last wins) unless coalesce is off (here, or per
      // subscription); resyncs are spread over a random delay of up to
      // resync_window seconds, so that the pages of a restarted gateway do not
      // all refetch in the same instant.
      this.coalesce = true;
      this.resync_window = 2;
      // Declarative subscriptions (data-pushy-url): watched from init() on when
      // declarative is true; a URL no element names any more is unsubscribed
      // release_delay seconds later, so an element moved or swapped by a
      // library does not cost an unsubscribe and a subscribe.
      this.declarative = true;
      this.release_delay = 1;
      // data-pushy-refresh: requests of one refresh URL within refresh_delay
      // seconds share one fetch; a failed fetch is retried after a backoff of
      // up to refresh_retry_cap seconds.
      this.refresh_delay = 0.1;
      this.refresh_retry_cap = 30;

      this.state = CLOSED;
      this._subscriptions = new Map(); // url -> Map callback -> {coalesce}
      this._pendingUpdates = new Map(); // object url -> its last coalesced update
      this._frame = null; // the scheduled flush of _pendingUpdates
      this._pendingResyncs = new Map(); // url -> timer of its jittered resync
      this._stateWatchers = new Set();
      this._errorWatchers = new Set();
      this._refused = 0; // attempts in a row whose socket never opened
      this._opened = false; // whether the current socket has opened
      this._socket = null;
      this._failures = 0; // attempts since the last stable connection
      this._everOpened = false;
      // After a reconnect: url -> whether its subscribe carried a version (then
      // the gateway says if it changed; else it is resynced once subscribed).
      this._resyncDue = new Map();
      this._versions = new Map(); // url -> the last version seen (docs/protocol.md)
      this._busyTries = new Map(); // url -> subscribes answered "busy" in a row
      // Presence (docs/protocol.md): url -> {callbacks, you, last}; joined
      // again after each reconnect, as subscriptions are subscribed again.
      this._presence = new Map();
      this._timers = { retry: null, stable: null, ping: null, pong: null };
      this._stopped = true;
      this._onOnline = this._retryNow.bind(this);
      this._declarations = new Declarations(this);
      this._presenceElements = new PresenceElements(this);
      this._refresher = new Refresher(this);
    }

    /* Connect, and keep connected until close(). */
    init() {
      if (!this._stopped) {
        return this;
      }
      this._stopped = false;
      this._log("init", this.socket_url);
      if (global.addEventListener) {
        global.addEventListener("online", this._onOnline);
      }
      this._connect();
      if (this.declarative) {
        this._declarations.start();
        this._presenceElements.start();
      }
      return this;
    }

    /* Disconnect for good (a page can init() again later). */
    close() {
      this._stopped = true;
      if (global.removeEventListener) {
        global.removeEventListener("online", this._onOnline);
      }
      this._clearTimers();
      this._clearPending();
      this._declarations.stop();
      this._presenceElements.stop();
      this._refresher.stop();
      this._dropSocket();
      this._setState(CLOSED);
    }

    /* Call callback(update) for every change to url (an object or a list URL).
     * Works before the socket is open; several callbacks per url are fine.
     * options.coalesce (default: this.coalesce) false: every update, not only
     * the last of each URL within an animation frame. options.version: the
     * version of url the page's data is from (rendered by the server), so that
     * a change made before the subscription is answered with a resync.
     * options.object true: url is one object, not a list (docs/protocol.md,
     * "object"): on a Redis Cluster its gateway then needs one channel for
     * it, not 13; a list said to be one hears none of its members. One
     * subscription per url: while any of its callbacks did not say so, it
     * is subscribed as it would be without (the wider wins). */
    subscribe(url, callback, options) {
      if (typeof callback !== "function") {
        throw new TypeError("pushy.subscribe(url, callback): callback is not a function");
      }
      const object = Boolean(options && options.object === true);
      if (object && url.includes("?")) {
        throw new TypeError("pushy.subscribe(url, callback, {object: true}): " + url +
          " has a query string, so it is a list, not one object");
      }
      const coalesce = options && options.coalesce !== undefined ? options.coalesce : null;
      let callbacks = this._subscriptions.get(url);
      if (!callbacks) {
        callbacks = new Map([[callback, { coalesce: coalesce, object: object }]]);
        this._subscriptions.set(url, callbacks);
        if (options && typeof options.version === "number") {
          this._versions.set(url, options.version);
        }
        this._log("subscribe", url);
        this._sendSubscribe(url);
        return;
      }
      const narrow = this._objectOnly(url);
      callbacks.set(callback, { coalesce: coalesce, object: object });
      if (narrow && !object) {
        this._log("subscribe (no longer only an object)", url);
        this._sendSubscribe(url);
      }
    }

    /* Whether every callback of url said it is one object. */
    _objectOnly(url) {
      const callbacks = this._subscriptions.get(url);
      if (!callbacks) {
        return false;
      }
      for (const options of callbacks.values()) {
        if (!options.object) {
          return false;
        }
      }
      return true;
    }

    /* Stop calling callback for url; without a callback, stop them all. */
    unsubscribe(url, callback) {
      const callbacks = this._subscriptions.get(url);
      if (!callbacks) {
        return;
      }
      if (callback === undefined) {
        callbacks.clear();
      } else {
        callbacks.delete(callback);
      }
      if (callbacks.size === 0) {
        this._subscriptions.delete(url);
        this._resyncDue.delete(url);
        this._versions.delete(url);
        clearTimeout(this._pendingResyncs.get(url));
        this._pendingResyncs.delete(url);
        this._log("unsubscribe", url);
        if (!this._presence.has(url)) {
          // A joined URL stays subscribed on the gateway: its presence needs it.
          this._send({ action: "unsubscribe", url: url });
        }
      }
    }

    /* Who else is here: join url (a URL this page may subscribe to) and call
     * callback(people, count, detail) now if known and on every change:
     * people, the first PRESENCE_LIMIT named people present ({id, name,
     * since}, since in ms since the epoch, earliest first; this page's own
     * person included), count, how many people are present in all (the
     * anonymous ones too), and detail, the whole message with you (this
     * page's own person id) and others (people without it). Joined again
     * after every reconnect. Returns a function that stops it; the last one
     * stopped leaves url. A "pushy:presence" event also goes to window. */
    presence(url, callback) {
      if (typeof callback !== "function") {
        throw new TypeError("pushy.presence(url, callback): callback is not a function");
      }
      let entry = this._presence.get(url);
      if (!entry) {
        entry = { callbacks: new Set(), you: null, last: null };
        this._presence.set(url, entry);
        this._log("join", url);
        this._sendJoin(url);
      }
      entry.callbacks.add(callback);
      if (entry.last !== null) {
        const detail = entry.last;
        setTimeout(() => {
          if (entry.callbacks.has(callback)) {
            callPresence(callback, detail);
          }
        }, 0);
      }
      return () => this._stopPresence(url, callback);
    }

    _stopPresence(url, callback) {
      const entry = this._presence.get(url);
      if (!entry || !entry.callbacks.delete(callback) || entry.callbacks.size > 0) {
        return;
      }
      this._presence.delete(url);
      this._log("leave", url);
      // Subscribed for updates too: leave only; else the join's subscription ends.
      this._send({ action: this._subscriptions.has(url) ? "leave" : "unsubscribe", url: url });
    }

    /* A presence message: to url's callbacks and as a pushy:presence event. */
    _onPresence(message) {
      const entry = this._presence.get(message.url);
      if (!entry || !Array.isArray(message.people)) {
        return;
      }
      const you = entry.you;
      const detail = Object.assign({}, message, {
        you: you,
        others: message.people.filter((person) => person.id !== you),
      });
      entry.last = detail;
      entry.callbacks.forEach((callback) => callPresence(callback, detail));
      if (typeof global.dispatchEvent === "function" && typeof CustomEvent === "function") {
        global.dispatchEvent(new CustomEvent("pushy:presence", { detail: detail }));
      }
    }

    /* Watch the connection: watcher(state) now and on every change, with state
     * one of "connecting", "open", "reconnecting", "closed". Returns a function
     * that stops watching. A "pushy:state" event also goes to window. */
    on_state(watcher) {
      this._stateWatchers.add(watcher);
      safeCall(watcher, this.state);
      const watchers = this._stateWatchers;
      return function () {
        watchers.delete(watcher);
      };
    }

    /* Hear of refusals: handler(error) for each {type: "error", code, message,
     * url?} -- a subscription the gateway refused ("forbidden", "limit",
     * "invalid"), a connection that could not be made ("refused": the
     * handshake was refused or the gateway is unreachable; browsers do not say
     * which) or that the gateway ended ("closed", with closeCode). Returns a
     * function that stops it. A "pushy:error" event also goes to window. */
    on_error(handler) {
      this._errorWatchers.add(handler);
      const watchers = this._errorWatchers;
      return function () {
        watchers.delete(handler);
      };
    }

    /* Report error: console warning (unless warn is false), on_error
     * handlers, and a "pushy:error" event: on window, or, when the error
     * concerns elements (a refresh), bubbling from each of them that is in
     * the document (window hears it through bubbling). */
    _error(error, warn, elements) {
      if (warn !== false) {
        console.warn("pushy:", error.message, error.url === undefined ? "" : error.url);
      }
      for (const handler of Array.from(this._errorWatchers)) {
        safeCall(handler, error);
      }
      if (typeof CustomEvent !== "function") {
        return;
      }
      const targets = elements ? Array.from(elements).filter((element) => element.isConnected) : [];
      if (!elements || targets.length === 0) {
        if (typeof global.dispatchEvent === "function") {
          global.dispatchEvent(new CustomEvent("pushy:error", { detail: error }));
        }
        return;
      }
      for (const element of targets) {
        element.dispatchEvent(new CustomEvent("pushy:error", { bubbles: true, detail: error }));
      }
    }

    _log(...args) {
      if (this.debug) {
        console.log("pushy:", ...args);
      }
    }

    _setState(state) {
      if (state === this.state) {
        return;
      }
      this._log("state", state);
      this.state = state;
      for (const watcher of Array.from(this._stateWatchers)) {
        safeCall(watcher, state);
      }
      if (typeof global.dispatchEvent === "function" && typeof CustomEvent === "function") {
        global.dispatchEvent(new CustomEvent("pushy:state", { detail: { state: state } }));
      }
    }

    _connect() {
      this._timers.retry = null;
      this._setState(this._everOpened || this._failures ? RECONNECTING : CONNECTING);
      let socket;
      try {
        socket = new WebSocket(websocketUrl(this.socket_url));
      } catch (error) {
        // A malformed URL: retrying cannot help, but keep the state honest.
        this._log("cannot connect:", error);
        this._stopped = true;
        this._setState(CLOSED);
        return;
      }
      this._socket = socket;
      this._opened = false;
      socket.onopen = () => this._onOpen(socket);
      socket.onmessage = (event) => this._onMessage(socket, event);
      socket.onclose = (event) => this._onClose(socket, event);
    }

    _onOpen(socket) {
      if (socket !== this._socket) {
        return;
      }
      // Changes made while we were away are lost: have the page reload them.
      const resync = this._everOpened || this._failures > 0;
      this._everOpened = true;
      this._opened = true;
      this._refused = 0;
      this._resyncDue = new Map();
      for (const url of this._subscriptions.keys()) {
        if (resync) {
          this._resyncDue.set(url, this._versions.has(url));
        }
        this._sendSubscribe(url);
      }
      for (const url of this._presence.keys()) {
        this._sendJoin(url);
      }
      this._timers.stable = setTimeout(() => {
        this._failures = 0;
      }, this.stable_after * 1000);
      this._schedulePing();
      this._setState(OPEN);
    }

    _onMessage(socket, event) {
      if (socket !== this._socket) {
        return;
      }
      // Anything received proves the connection alive.
      clearTimeout(this._timers.pong);
      this._timers.pong = null;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        this._log("ignoring a frame that is not JSON:", event.data);
        return;
      }
      this._log("received", message);
      this._handle(message);
    }

    _handle(message) {
      switch (message && message.type) {
        case "update":
          this._deliverUpdate(message);
          break;
        case "hidden":
          this._deliverHidden(message);
          break;
        case "subscribed":
          this._onSubscribed(message);
          break;
        case "joined": {
          const entry = this._presence.get(message.url);
          if (entry) {
            entry.you = message.you;
          }
          break;
        }
        case "presence":
          this._onPresence(message);
          break;
        case "resync":
          if (typeof message.url === "string") {
            // Versions: only this URL changed (or cannot be known not to have).
            this._saw(message.url, message.version);
            if (this._subscriptions.has(message.url)) {
              this._resync(message.url);
            }
            break;
          }
          for (const url of Array.from(this._subscriptions.keys())) {
            this._resync(url);
          }
          break;
        case "error":
          // Pages can tell a refused subscription (forbidden, limit) this way.
          if (message.url !== undefined) {
            this._deliver(message.url, message);
          }
          this._error(message);
          if (RETRIED_CODES.has(message.code) && typeof message.url === "string") {
            this._subscribeLater(message.url);
          }
          break;
        default:
          break; // "pong", "unsubscribed", "left", and types a later version may add
      }
    }

    /* Subscribe, with the last version seen (null: none yet). A gateway that
     * knows versions answers whether it changed since; others ignore it. */
    _sendSubscribe(url) {
      const version = this._versions.has(url) ? this._versions.get(url) : null;
      const message = { action: "subscribe", url: url, version: version };
      if (this._objectOnly(url)) {
        message.object = true;
      }
      this._send(message);
    }

    /* Join url. Presence needs no update of url: its subscription is asked
     * for as one object's (one channel on a Redis Cluster), which a
     * subscription of url for updates widens as it needs (the gateway never
     * narrows one). A URL with a query string cannot be said to be one. */
    _sendJoin(url) {
      const message = { action: "join", url: url };
      if (!url.includes("?")) {
        message.object = true;
      }
      this._send(message);
    }

    /* A subscribe the gateway had no time to answer ("busy": its
     * authorization work was full; "timeout": the view was too slow): asked
     * again after a jittered backoff, 1, 2, 4 ... up to reconnect_cap
     * seconds, while the URL is still wanted. */
    _subscribeLater(url) {
      const tries = (this._busyTries.get(url) || 0) + 1;
      this._busyTries.set(url, tries);
      const cap = Number(this.reconnect_cap) || 10;
      const wait = Math.random() * Math.min(cap, 2 ** (tries - 1));
      this._log("asking again for", url, "in", wait.toFixed(1), "s");
      setTimeout(() => {
        if (this.state !== "open") {
          return;
        }
        if (this._subscriptions.has(url)) {
          this._sendSubscribe(url);
        }
        if (this._presence.has(url)) {
          this._sendJoin(url);
        }
      }, wait * 1000);
    }

    /* Re-subscribed after a reconnect: resync unless the gateway compared
     * versions (it sends a resync of this URL itself when it changed). */
    _onSubscribed(message) {
      const url = message.url;
      this._busyTries.delete(url);
      const compared = this._resyncDue.get(url) && typeof message.version === "number";
      if (this._resyncDue.delete(url) && !compared) {
        this._resync(url);
      }
      this._saw(url, message.version);
    }

    /* Remember the newest version seen for a subscribed url. */
    _saw(url, version) {
      if (typeof version !== "number" || !this._subscriptions.has(url)) {
        return;
      }
      const known = this._versions.get(url);
      if (known === undefined || version > known) {
        this._versions.set(url, version);
      }
    }

    /* An update reaches the callbacks of its object URL and of its collection,
     * each callback once: at once for those that do not coalesce, at the next
     * animation frame for the others, with the last update of that URL. */
    _deliverUpdate(update) {
      this._saw(update.url, update.version);
      if (update.collection !== undefined) {
        this._saw(update.collection, update.version);
      }
      const [now, later] = this._updateCallbacks(update);
      now.forEach((callback) => safeCall(callback, update));
      if (later.size > 0) {
        // Re-inserted so that the flush follows the order of the last arrivals.
        this._pendingUpdates.delete(update.url);
        this._pendingUpdates.set(update.url, update);
        this._scheduleFlush();
      }
    }

    /* The object at message.url was changed so that this user may no longer
     * see it: its callbacks and its collection's are told at once (each
     * callback once), and an update of it still waiting for the next frame
     * is dropped (it came before). The gateway ended a subscription to the
     * object itself; the list subscription stays. */
    _deliverHidden(message) {
      if (typeof message.url !== "string") {
        return;
      }
      this._pendingUpdates.delete(message.url);
      const [now, later] = this._updateCallbacks(message);
      now.forEach((callback) => safeCall(callback, message));
      later.forEach((callback) => safeCall(callback, message));
    }

    /* [callbacks to call now, callbacks that coalesce] for an update. A
     * callback subscribed both ways (object and list) is called at once. */
    _updateCallbacks(update) {
      const coalescing = new Map();
      for (const url of [update.url, update.collection]) {
        const found = url === undefined ? null : this._subscriptions.get(url);
        if (found) {
          found.forEach((options, callback) => {
            const coalesce = options.coalesce === null ? this.coalesce : options.coalesce;
            coalescing.set(callback, coalesce && coalescing.get(callback) !== false);
          });
        }
      }
      const now = new Set();
      const later = new Set();
      coalescing.forEach((coalesce, callback) => (coalesce ? later : now).add(callback));
      return [now, later];
    }

    /* Run _flush at the next animation frame; in a hidden tab, where frames
     * do not come, soon after (browsers throttle that to about a second). */
    _scheduleFlush() {
      if (this._frame !== null) {
        return;
      }
      const flush = () => this._flush();
      const hidden = typeof document !== "undefined" && document.visibilityState === "hidden";
      if (typeof global.requestAnimationFrame === "function" && !hidden) {
        this._frame = { raf: global.requestAnimationFrame(flush) };
      } else {
        this._frame = { timeout: setTimeout(flush, 16) };
      }
    }

    /* The last update of each URL to its coalescing callbacks, as subscribed now. */
    _flush() {
      this._frame = null;
      const updates = Array.from(this._pendingUpdates.values());
      this._pendingUpdates.clear();
      for (const update of updates) {
        const later = this._updateCallbacks(update)[1];
        later.forEach((callback) => safeCall(callback, update));
      }
    }

    /* Tell url's callbacks to reload, after a random delay of up to
     * resync_window seconds (one pending resync per url). */
    _resync(url) {
      if (this._pendingResyncs.has(url)) {
        return;
      }
      const spread = Math.max(0, Number(this.resync_window) || 0);
      if (spread === 0) {
        this._deliver(url, { type: "resync", url: url });
        return;
      }
      const timer = setTimeout(() => {
        this._pendingResyncs.delete(url);
        this._deliver(url, { type: "resync", url: url });
      }, Math.random() * spread * 1000);
      this._pendingResyncs.set(url, timer);
    }

    _deliver(url, message) {
      const callbacks = this._subscriptions.get(url);
      if (callbacks) {
        Array.from(callbacks.keys()).forEach((callback) => safeCall(callback, message));
      }
    }

    _onClose(socket, event) {
      if (socket !== this._socket) {
        return;
      }
      this._log("closed", event.code, event.reason);
      if (!this._opened) {
        this._refused += 1;
        this._reportRefused();
      } else if (ERROR_CLOSES.has(event.code) || (event.code >= 4000 && event.code < 5000)) {
        const reason = event.reason ? " (" + event.reason + ")" : "";
        this._error({
          type: "error",
          code: "closed",
          closeCode: event.code,
          message: "the gateway closed the connection with " + event.code + reason,
        });
      }
      this._lost();
    }

    /* The connection is gone (closed, or found dead): try again later. */
    _lost() {
      this._clearTimers();
      this._dropSocket();
      if (this._stopped) {
        return;
      }
      const delay = this._nextDelay();
      this._log("reconnecting in", delay.toFixed(2), "s");
      this._setState(RECONNECTING);
      this._timers.retry = setTimeout(() => this._connect(), delay * 1000);
    }

    /* A connection attempt failed before opening. The console hears of the
     * first one and of every tenth after that; on_error handlers of each. */
    _reportRefused() {
      const count = this._refused;
      const error = {
        type: "error",
        code: "refused",
        attempts: count,
        message:
          "cannot connect to " + websocketUrl(this.socket_url) + " (" + count +
          " attempt" + (count === 1 ? "" : "s") + " in a row): the gateway refused " +
          "the handshake (an Origin not in ALLOWED_ORIGINS, a connection limit) " +
          "or is not reachable; its log says which",
      };
      this._error(error, count === 1 || count % 10 === 0);
    }

    /* Seconds to wait before the next attempt: full jitter, uniform between 0
     * and base * 2^failures capped, so that clients dropped together by one
     * gateway do not all come back at once. Once attempts keep failing before
     * they open (a refusal will not go away by itself), between half the cap
     * and the cap. */
    _nextDelay() {
      if (this._refused >= REFUSALS_BEFORE_CAP) {
        this._failures += 1;
        return this.reconnect_cap * (0.5 + Math.random() / 2);
      }
      const ceiling = Math.min(this.reconnect_cap, this.reconnect_base * 2 ** this._failures);
      this._failures += 1;
      return Math.random() * ceiling;
    }

    /* The browser came back online: do not wait out the backoff. */
    _retryNow() {
      if (this._timers.retry !== null) {
        clearTimeout(this._timers.retry);
        this._connect();
      }
    }

    _schedulePing() {
      this._timers.ping = setTimeout(() => {
        this._send({ action: "ping" });
        if (this._timers.pong === null) {
          this._timers.pong = setTimeout(() => {
            this._log("no answer to ping: connection is dead");
            this._lost();
          }, this.pong_timeout * 1000);
        }
        this._schedulePing();
      }, this.ping_interval * 1000);
    }

    _send(message) {
      const socket = this._socket;
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(message));
      }
      // Otherwise _onOpen sends every subscription when the socket opens.
    }

    _dropSocket() {
      const socket = this._socket;
      this._socket = null;
      if (!socket) {
        return;
      }
      socket.onopen = socket.onmessage = socket.onclose = null;
      if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
        try {
          socket.close(1000);
        } catch (error) {
          this._log("close failed:", error);
        }
      }
    }

    /* Forget coalesced updates and scheduled resyncs (close()). */
    _clearPending() {
      if (this._frame !== null) {
        if (this._frame.raf !== undefined) {
          global.cancelAnimationFrame(this._frame.raf);
        } else {
          clearTimeout(this._frame.timeout);
        }
        this._frame = null;
      }
      this._pendingUpdates.clear();
      this._pendingResyncs.forEach((timer) => clearTimeout(timer));
      this._pendingResyncs.clear();
    }

    _clearTimers() {
      for (const name of Object.keys(this._timers)) {
        clearTimeout(this._timers[name]);
        this._timers[name] = null;
      }
    }
  }

  /* ---- Declarative subscriptions: data-pushy-url ------------------------ */

  const URL_ATTR = "data-pushy-url";
  const EVENTS_ATTR = "data-pushy-events";
  const VERSION_ATTR = "data-pushy-version";
  const REFRESH_ATTR = "data-pushy-refresh";
  // The URL is one object's (the template tag says so of a model instance).
  const OBJECT_ATTR = "data-pushy-object";
  // Refusals of a subscribe that may pass later: asked again (_subscribeLater).
  const RETRIED_CODES = new Set(["busy", "timeout"]);
  // Set on a refreshed element whose refresh URL answered 403, and on one of
  // an object the user may no longer see (a "hidden" message): stale content.
  const FORBIDDEN_ATTR = "data-pushy-forbidden";
  // The gateway's own bound (gateway/protocol.py): a longer URL is refused
  // here, before it could make a subscribe message the gateway drops the
  // connection for.
  const MAX_URL_LENGTH = 2048;

  /* Why url cannot be subscribed to, or null when it can. */
  function urlProblem(url) {
    if (url.length > MAX_URL_LENGTH) {
      return "data-pushy-url is longer than " + MAX_URL_LENGTH + " characters";
    }
    if (!url.trim()) {
      return "data-pushy-url is blank";
    }
    return null;
  }

  /* Dispatch pushy:<kind> on element (bubbling, cancelable); whether no
   * listener called preventDefault(). */
  function fire(element, kind, detail) {
    const event = new CustomEvent("pushy:" + kind, {
      bubbles: true,
      cancelable: true,
      detail: detail,
    });
    return element.dispatchEvent(event);
  }

  /* data-pushy-events="create delete": the update events element hears;
   * without it, all of them. Resyncs always reach it. */
  function wants(element, message) {
    const only = element.getAttribute(EVENTS_ATTR);
    if (message.type !== "update" || only === null) {
      return true;
    }
    return only.split(/[\s,]+/).includes(message.event);
  }

  /* The elements with data-pushy-url, counted per URL: each URL is one
   * subscription of the PushyApp however many elements name it. A
   * MutationObserver binds elements as they enter the document and unbinds
   * them as they leave; one callback receives the records of a whole task, so
   * an element removed and re-added in it stays bound, and a URL left by its
   * last element is released only after app.release_delay seconds. */
  /* Elements carrying an attribute, followed as the document changes: what
   * Declarations (data-pushy-url) and PresenceElements (data-pushy-presence)
   * share. A subclass has begin() (the document as it is), reconcile(records)
   * (after each change) and letGo() (stop: what it holds). */
  class AttributeWatcher {
    constructor(app, attribute) {
      this.app = app;
      this.attribute = attribute;
      this.releases = new Map(); // url -> timer of its release
      this.observer = null;
    }

    start() {
      if (this.observer || typeof document === "undefined" || typeof MutationObserver !== "function") {
        return;
      }
      this.observer = new MutationObserver((records) => this.reconcile(records));
      this.observer.observe(document, {
        childList: true,
        subtree: true,
        attributes: true,
        attributeFilter: [this.attribute],
      });
      this.begin();
    }

    stop() {
      if (this.observer) {
        this.observer.disconnect();
        this.observer = null;
      }
      this.releases.forEach((timer) => clearTimeout(timer));
      this.releases.clear();
      this.letGo();
    }
  }

  class Declarations extends AttributeWatcher {
    constructor(app) {
      super(app, URL_ATTR);
      this.bound = new Map(); // element -> the URL it is bound to
      this.elements = new Map(); // url -> Set of its bound elements
      this.held = new Set(); // URLs our callback is subscribed to
      this.narrow = new Set(); // held URLs subscribed as one object's only
      this.callback = (message) => this.deliver(message);
    }

    begin() {
      this.bindTree(document);
    }

    letGo() {
      for (const url of this.held) {
        this.app.unsubscribe(url, this.callback);
      }
      this.held.clear();
      this.narrow.clear();
      this.bound.clear();
      this.elements.clear();
    }

    /* One pass over a task's mutation records: bind what arrived, rebind what
     * changed its URL, and unbind bound elements no longer in the document. */
    reconcile(records) {
      let removals = false;
      for (const record of records) {
        if (record.type === "attributes") {
          if (record.target.isConnected) {
            this.bind(record.target);
          }
          continue;
        }
        record.addedNodes.forEach((node) => {
          if (node.nodeType === 1 && node.isConnected) {
            this.bindTree(node);
          }
        });
        removals = removals || record.removedNodes.length > 0;
      }
      if (removals) {
        for (const element of Array.from(this.bound.keys())) {
          if (!element.isConnected) {
            this.unbind(element);
          }
        }
      }
    }

    bindTree(root) {
      if (root.nodeType === 1 && root.hasAttribute(URL_ATTR)) {
        this.bind(root);
      }
      root.querySelectorAll("[" + URL_ATTR + "]").forEach((element) => this.bind(element));
    }

    /* Bind element to its data-pushy-url (rebind when it changed, unbind when
     * it is gone). A URL the gateway could never accept is reported through
     * the error path (console, on_error, pushy:error) and skipped. */
    bind(element) {
      const url = element.getAttribute(URL_ATTR);
      const old = this.bound.get(element);
      if (old === url) {
        return;
      }
      if (old !== undefined) {
        this.unbind(element);
      }
      if (url === null || url === "") {
        return;
      }
      let problem = urlProblem(url);
      if (!problem && element.hasAttribute(OBJECT_ATTR) && url.includes("?")) {
        problem = "data-pushy-object names one object, and a URL with a query string is a list";
      }
      if (problem) {
        const shown = url.length > 200 ? url.slice(0, 200) + "…" : url;
        this.app._error({ type: "error", code: "invalid", url: shown, message: problem + ": not subscribed" });
        return;
      }
      this.bound.set(element, url);
      let elements = this.elements.get(url);
      if (!elements) {
        elements = new Set();
        this.elements.set(url, elements);
      }
      elements.add(element);
      this.hold(url, element);
    }

    /* Subscribe to url unless it is held already or its release is pending;
     * as one object's while every element of it has data-pushy-object. */
    hold(url, element) {
      clearTimeout(this.releases.get(url));
      this.releases.delete(url);
      const object = element.hasAttribute(OBJECT_ATTR);
      if (this.held.has(url)) {
        if (!object && this.narrow.delete(url)) {
          this.app.subscribe(url, this.callback, {}); // widened
        }
        return;
      }
      this.held.add(url);
      if (object) {
        this.narrow.add(url);
      }
      const version = Number(element.getAttribute(VERSION_ATTR));
      const options = Number.isSafeInteger(version) && version >= 0 ? { version: version } : {};
      options.object = object;
      this.app.subscribe(url, this.callback, options);
    }

    unbind(element) {
      const url = this.bound.get(element);
      this.bound.delete(element);
      const elements = this.elements.get(url);
      if (!elements) {
        return;
      }
      elements.delete(element);
      if (elements.size > 0) {
        return;
      }
      this.elements.delete(url);
      const delay = Math.max(0, Number(this.app.release_delay) || 0) * 1000;
      this.releases.set(url, setTimeout(() => this.release(url), delay));
    }

    release(url) {
      this.releases.delete(url);
      if (!this.elements.has(url) && this.held.delete(url)) {
        this.narrow.delete(url);
        this.app.unsubscribe(url, this.callback);
      }
    }

    /* A message of the PushyApp to the elements bound to its URLs: an update
     * to those of the object (pushy:delete when it was deleted, pushy:update
     * otherwise) and to those of its collection (pushy:update, whatever the
     * event); a resync as pushy:resync; a hidden object as pushy:hidden to
     * both (a list refreshes without it, the object's own elements are
     * marked data-pushy-forbidden: what they show is no longer theirs). */
    deliver(message) {
      if (message.type === "hidden") {
        this.dispatch(message.url, "hidden", message);
        if (message.collection !== undefined && message.collection !== message.url) {
          this.dispatch(message.collection, "hidden", message);
        }
      } else if (message.type === "update") {
        this.dispatch(message.url, message.event === "delete" ? "delete" : "update", message);
        if (message.collection !== undefined && message.collection !== message.url) {
          this.dispatch(message.collection, "update", message);
        }
      } else if (message.type === "resync") {
        this.dispatch(message.url, "resync", message);
      }
    }

    dispatch(url, kind, message) {
      const elements = this.elements.get(url);
      if (!elements) {
        return;
      }
      for (const element of Array.from(elements)) {
        if (!element.isConnected || !wants(element, message)) {
          continue;
        }
        const proceed = fire(element, kind, message);
        if (!proceed) {
          continue;
        }
        if (kind === "hidden" && url === message.url) {
          element.setAttribute(FORBIDDEN_ATTR, ""); // no fetch: it would be a 404
        } else if (element.hasAttribute(REFRESH_ATTR)) {
          this.app._refresher.request(element, kind);
        }
      }
    }
  }

  /* ---- data-pushy-presence: who else is here, kept live ----------------- */

  const PRESENCE_ATTR = "data-pushy-presence";

  /* The text an element shows by default: the others' names, then "+N" for
   * those present but not named here (anonymous, or past PRESENCE_LIMIT). */
  function presenceText(detail) {
    const names = detail.others.map((person) => person.name);
    const mine = detail.people.length - detail.others.length;
    const unnamed = detail.count - mine - names.length;
    if (unnamed > 0) {
      names.push("+" + unnamed);
    }
    return names.join(", ");
  }

  /* Elements with data-pushy-presence="URL": the page joins URL while one is
   * in the document, and each such element gets a pushy:presence event
   * (bubbling, cancelable; detail as presence() gives it) on every change;
   * unless a listener calls preventDefault(), its text becomes the others'
   * names and its data-pushy-count the number of others present. */
  class PresenceElements extends AttributeWatcher {
    constructor(app) {
      super(app, PRESENCE_ATTR); // its releases: url -> timer of its leave
      this.elements = new Map(); // url -> Set of elements
      this.stops = new Map(); // url -> the function that leaves it
    }

    begin() {
      this.reconcile();
    }

    letGo() {
      this.stops.forEach((stop) => stop());
      this.stops.clear();
      this.elements.clear();
    }

    /* Match the joined URLs to the elements in the document now. */
    reconcile() {
      const now = new Map();
      document.querySelectorAll("[" + PRESENCE_ATTR + "]").forEach((element) => {
        const url = element.getAttribute(PRESENCE_ATTR);
        if (url && !urlProblem(url)) {
          if (!now.has(url)) {
            now.set(url, new Set());
          }
          now.get(url).add(element);
        }
      });
      const before = this.elements;
      this.elements = now;
      for (const [url, elements] of now) {
        clearTimeout(this.releases.get(url));
        this.releases.delete(url);
        if (!this.stops.has(url)) {
          this.stops.set(url, this.app.presence(url, (people, count, detail) => this.deliver(url, detail)));
          continue;
        }
        // An element new to a joined URL hears the list known (only it: what
        // deliver() writes is itself a mutation, and must not come back here).
        const known = before.get(url) || new Set();
        const entry = this.app._presence.get(url);
        const fresh = Array.from(elements).filter((element) => !known.has(element));
        if (entry && entry.last && fresh.length > 0) {
          this.deliver(url, entry.last, fresh);
        }
      }
      for (const url of this.stops.keys()) {
        if (!now.has(url) && !this.releases.has(url)) {
          const delay = Math.max(0, Number(this.app.release_delay) || 0) * 1000;
          this.releases.set(url, setTimeout(() => this.release(url), delay));
        }
      }
    }

    release(url) {
      this.releases.delete(url);
      if (!this.elements.has(url) && this.stops.has(url)) {
        this.stops.get(url)();
        this.stops.delete(url);
      }
    }

    deliver(url, detail, only) {
      for (const element of Array.from(only || this.elements.get(url) || [])) {
        if (element.isConnected && fire(element, "presence", detail)) {
          element.textContent = presenceText(detail);
          element.setAttribute("data-pushy-count", String(detail.count - (detail.people.length - detail.others.length)));
        }
      }
    }
  }

  /* ---- data-pushy-refresh: fetch the page again, replace by id ---------- */

  const FIELDS = "input, textarea, select";

  /* Whether the user changed a form field from what the page rendered. */
  function edited(field) {
    if (field.type === "checkbox" || field.type === "radio") {
      return field.checked !== field.defaultChecked;
    }
    if (field.tagName === "SELECT") {
      return Array.from(field.options).some((option) => option.selected !== option.defaultSelected);
    }
    return field.value !== field.defaultValue;
  }

  /* The nodes inside element a refresh must not touch: the focused element
   * and every form field the user has edited. */
  function keepers(element) {
    const keep = new Set();
    const active = document.activeElement;
    if (active && active !== document.body && element.contains(active)) {
      keep.add(active);
    }
    element.querySelectorAll(FIELDS).forEach((field) => {
      if (edited(field)) {
        keep.add(field);
      }
    });
    if (element.matches(FIELDS) && edited(element)) {
      keep.add(element);
    }
    return keep;
  }

  function holdsAny(node, keep) {
    for (const kept of keep) {
      if (node.contains(kept)) {
        return true;
      }
    }
    return false;
  }

  /* Make live look like fresh. Subtrees without a kept node are replaced
   * whole; along the path to a kept node the live elements stay (their
   * attributes and other children updated), so the kept node is never
   * detached: it keeps focus, selection, caret and value. */
  function merge(live, fresh, keep) {
    if (keep.has(live)) {
      return live;
    }
    if (!holdsAny(live, keep) || live.nodeName !== fresh.nodeName) {
      live.replaceWith(fresh);
      return fresh;
    }
    for (const attribute of Array.from(live.attributes)) {
      if (!fresh.hasAttribute(attribute.name)) {
        live.removeAttribute(attribute.name);
      }
    }
    for (const attribute of Array.from(fresh.attributes)) {
      if (live.getAttribute(attribute.name) !== attribute.value) {
        live.setAttribute(attribute.name, attribute.value);
      }
    }
    mergeChildren(live, fresh, keep);
    return live;
  }

  /* The index in candidates (from start on) of the counterpart of a live
   * child: same tag, same id and same name; -1 when there is none. */
  function counterpart(child, candidates, start) {
    for (let i = start; i < candidates.length; i += 1) {
      const candidate = candidates[i];
      if (
        candidate.nodeName === child.nodeName &&
        candidate.nodeType === 1 &&
        candidate.id === child.id &&
        candidate.getAttribute("name") === child.getAttribute("name")
      ) {
        return i;
      }
    }
    return -1;
  }

  function mergeChildren(live, fresh, keep) {
    const incoming = Array.from(fresh.childNodes);
    const pairs = new Map(); // fresh child -> the live child that stays for it
    let start = 0;
    for (const child of Array.from(live.childNodes)) {
      if (child.nodeType !== 1 || !holdsAny(child, keep)) {
        continue;
      }
      const index = counterpart(child, incoming, start);
      if (index >= 0) {
        pairs.set(incoming[index], child);
        start = index + 1;
      }
    }
    const staying = new Set(pairs.values());
    for (const child of Array.from(live.childNodes)) {
      if (!staying.has(child)) {
        child.remove();
      }
    }
    // Only the staying children are left, in order: insert the others around them.
    let cursor = live.firstChild;
    for (const node of incoming) {
      const stays = pairs.get(node);
      if (stays) {
        merge(stays, node, keep);
        cursor = stays.nextSibling;
      } else {
        live.insertBefore(node, cursor);
      }
    }
  }

  /* Scroll offsets of element and of its descendants with an id, and of the
   * window, to put back after a refresh. */
  function scrollState(element) {
    const boxes = [];
    for (const node of [element, ...element.querySelectorAll("[id]")]) {
      if (node.id && (node.scrollTop || node.scrollLeft)) {
        boxes.push([node.id, node.scrollTop, node.scrollLeft]);
      }
    }
    return { x: global.scrollX, y: global.scrollY, boxes: boxes };
  }

  function restoreScroll(state) {
    for (const [id, top, left] of state.boxes) {
      const node = document.getElementById(id);
      if (node) {
        node.scrollTop = top;
        node.scrollLeft = left;
      }
    }
    if (global.scrollX !== state.x || global.scrollY !== state.y) {
      global.scrollTo(state.x, state.y);
    }
  }

  /* Fetches for data-pushy-refresh elements: one per refresh URL at a time,
   * requests within app.refresh_delay seconds sharing it, and one more after
   * it when requests came while it was in flight (its answer may predate
   * them). A failure leaves the elements as they are and tries again later. */
  class Refresher {
    constructor(app) {
      this.app = app;
      this.batches = new Map(); // refresh URL -> {elements, timer, busy, failures}
    }

    stop() {
      this.batches.forEach((batch) => clearTimeout(batch.timer));
      this.batches.clear();
    }

    /* Refresh element for a pushy:<kind> event; a delete removes it. */
    request(element, kind) {
      if (kind === "delete") {
        element.remove();
        return;
      }
      const url = this.target(element);
      if (url === null) {
        return;
      }
      let batch = this.batches.get(url);
      if (!batch) {
        batch = { elements: new Set(), timer: null, busy: false, failures: 0 };
        this.batches.set(url, batch);
      }
      batch.elements.add(element);
      if (!batch.busy && batch.timer === null) {
        this.schedule(url, batch, this.app.refresh_delay);
      }
    }

    /* The URL to fetch for element (its data-pushy-refresh, or the page),
     * or null, reported, when it cannot be refreshed: no id, or a URL of
     * another origin (whose HTML the page would never have shown). */
    target(element) {
      const problem = (reason, message) => {
        const error = { type: "error", code: "refresh", reason: reason, status: null, message: message };
        if (reason !== "no-id") {
          error.url = element.getAttribute(REFRESH_ATTR);
        }
        this.app._error(error, true, [element]);
        return null;
      };
      if (!element.id) {
        return problem("no-id", "an element with data-pushy-refresh needs an id: not refreshed");
      }
      let url;
      try {
        url = new URL(element.getAttribute(REFRESH_ATTR) || global.location.href, global.location.href);
      } catch (error) {
        return problem("not-url", "#" + element.id + ": data-pushy-refresh is not a URL");
      }
      if (url.origin !== global.location.origin) {
        return problem("foreign-origin", "#" + element.id + ": data-pushy-refresh must be of this page's origin");
      }
      url.hash = "";
      return url.href;
    }

    schedule(url, batch, seconds) {
      batch.timer = setTimeout(() => this.fetch(url, batch), Math.max(0, Number(seconds) || 0) * 1000);
    }

    fetch(url, batch) {
      batch.timer = null;
      batch.busy = true;
      const elements = batch.elements;
      batch.elements = new Set();
      this.app._log("refresh", url, elements.size, "element(s)");
      global
        .fetch(url, {
          // Redirects are followed, so that a page the site moved within
          // itself still refreshes; refusal() then checks where they led.
          redirect: "follow",
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "text/html", "X-Pushy-Refresh": "1" },
        })
        .then((response) => {
          const refused = refusal(url, response);
          if (refused) {
            throw refused;
          }
          return response.text();
        })
        .then(
          (html) => this.done(url, batch, elements, html),
          (error) => this.failed(url, batch, elements, error)
        );
    }

    done(url, batch, elements, html) {
      batch.busy = false;
      batch.failures = 0;
      const page = new DOMParser().parseFromString(html, "text/html");
      for (const element of outermost(elements)) {
        replace(element, page);
      }
      this.next(url, batch, this.app.refresh_delay);
    }

    /* A fetch that brought nothing to insert. 404 (or 410): the page is
     * gone, and so are the elements, as for a delete. 403: the elements stay,
     * marked data-pushy-forbidden. Neither is tried again (a later update of
     * the element's URL asks again). Anything else is tried again after a
     * backoff of at most app.refresh_retry_cap seconds. Each is reported,
     * with pushy:error on the elements. */
    failed(url, batch, elements, error) {
      batch.busy = false;
      const report = {
        type: "error",
        code: "refresh",
        reason: error.reason || "network",
        status: error.status === undefined ? null : error.status,
        url: url,
      };
      if (error.responseUrl !== undefined && error.responseUrl !== url) {
        report.responseUrl = error.responseUrl;
      }
      const why = "could not refresh from " + url + " (" + error.message + ")";
      const status = report.reason === "status" ? report.status : null;
      if (status === 404 || status === 410 || status === 403) {
        batch.failures = 0;
        const gone = status !== 403;
        const outcome = gone ? "removed, as for a delete" : "marked " + FORBIDDEN_ATTR + ", not tried again";
        report.message = why + ": " + outcome;
        if (!gone) {
          elements.forEach((element) => element.setAttribute(FORBIDDEN_ATTR, ""));
        }
        this.app._error(report, true, elements);
        if (gone) {
          elements.forEach((element) => element.remove());
        }
        this.next(url, batch, this.app.refresh_delay);
        return;
      }
      batch.failures += 1;
      elements.forEach((element) => batch.elements.add(element));
      const wait = Math.min(Number(this.app.refresh_retry_cap) || 30, 2 ** (batch.failures - 1));
      report.message = why + ": trying again in " + wait + " s";
      this.app._error(report, true, elements);
      this.next(url, batch, wait);
    }

    /* Fetch again for the elements that asked meanwhile, or forget url. */
    next(url, batch, seconds) {
      for (const element of batch.elements) {
        if (!element.isConnected) {
          batch.elements.delete(element);
        }
      }
      if (batch.elements.size === 0) {
        if (this.batches.get(url) === batch) {
          this.batches.delete(url);
        }
        return;
      }
      this.schedule(url, batch, seconds);
    }
  }

  /* Why the answer to a refresh fetch of url must not be inserted: an Error
   * with reason, status and responseUrl; null when it may be. Only the
   * site's own HTML ever is. An answer of another origin (where an open
   * redirect of the site led) or of another type (JSON echoing what a user
   * typed, say) would, once inserted, run its onerror= attributes in the
   * page's origin. A redirect to another path of the site is a login page,
   * most likely: not the page asked for. */
  function refusal(url, response) {
    const final = response.url || url; // "" for some service-worker answers
    const refuse = (reason, message) =>
      Object.assign(new Error(message), { reason: reason, status: response.status, responseUrl: final });
    let origin = null;
    try {
      origin = new URL(final).origin;
    } catch (error) {
      // not a URL: refused below
    }
    // "basic": a same-origin answer; "default": one a service worker made.
    if (origin !== global.location.origin || (response.type !== "basic" && response.type !== "default")) {
      return refuse("foreign-origin", (response.redirected ? "redirected to " : "answered by ") + final);
    }
    if (response.redirected && new URL(final).pathname !== new URL(url).pathname) {
      return refuse("redirected", "redirected to " + final);
    }
    if (!response.ok) {
      return refuse("status", "HTTP " + response.status);
    }
    const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
    if (type !== "text/html") {
      return refuse("not-html", "the answer is " + (type || "of no Content-Type") + ", not text/html");
    }
    return null;
  }

  /* The connected elements of a set that are not inside another of them:
   * refreshing those refreshes the others too (and an inner one taken from
   * the fetched page first would be missing from its outer one). */
  function outermost(elements) {
    const found = [];
    for (const element of elements) {
      let inside = false;
      for (let node = element.parentNode; node && !inside; node = node.parentNode) {
        inside = elements.has(node);
      }
      if (element.isConnected && !inside) {
        found.push(element);
      }
    }
    return found;
  }

  /* Put the element of the same id in page in element's place (merged, see
   * merge()), or remove element when page has none: its object is gone.
   * Scripts in page are never run: a DOMParser document's scripts stay inert
   * wherever they are moved. */
  function replace(element, page) {
    const fresh = page.getElementById(element.id);
    if (!fresh) {
      element.remove();
      return;
    }
    const scroll = scrollState(element);
    const result = merge(element, document.adoptNode(fresh), keepers(element));
    restoreScroll(scroll);
    fire(result, "refreshed", { id: element.id });
  }

  PushyApp.websocketUrl = websocketUrl;
  global.PushyApp = PushyApp;

  /* Started by {% pushy_scripts %} or the first {% pushy_live %}:
   * configuration from this script tag. Once per page: a page that has both
   * loads the file twice, and the second finds pushy running. */
  const script = typeof document === "undefined" ? null : document.currentScript;
  if (script && script.hasAttribute("data-pushy-autostart") && global.pushy === undefined) {
    const app = new PushyApp();
    app.socket_url = script.getAttribute("data-pushy-socket-url") || app.socket_url;
    app.debug = script.getAttribute("data-pushy-debug") === "true";
    global.pushy = app;
    app.init();
  }
})(window);

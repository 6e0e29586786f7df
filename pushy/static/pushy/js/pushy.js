/*
 * pushy.js: the browser client of django-pushy (wire protocol v1, docs/protocol.md).
 *
 *   pushy = new PushyApp;
 *   pushy.socket_url = 'http://localhost:8888/';
 *   pushy.debug = true;
 *   pushy.init();
 *   pushy.subscribe('/api/v1/shot/1/', function (update) { ... });
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
      this._timers = { retry: null, stable: null, ping: null, pong: null };
      this._stopped = true;
      this._onOnline = this._retryNow.bind(this);
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
      this._dropSocket();
      this._setState(CLOSED);
    }

    /* Call callback(update) for every change to url (an object or a list URL).
     * Works before the socket is open; several callbacks per url are fine.
     * options.coalesce (default: this.coalesce) false: every update, not only
     * the last of each URL within an animation frame. options.version: the
     * version of url the page's data is from (rendered by the server), so that
     * a change made before the subscription is answered with a resync. */
    subscribe(url, callback, options) {
      if (typeof callback !== "function") {
        throw new TypeError("pushy.subscribe(url, callback): callback is not a function");
      }
      let callbacks = this._subscriptions.get(url);
      if (!callbacks) {
        callbacks = new Map();
        this._subscriptions.set(url, callbacks);
        if (options && typeof options.version === "number") {
          this._versions.set(url, options.version);
        }
        this._log("subscribe", url);
        this._sendSubscribe(url);
      }
      const coalesce = options && options.coalesce !== undefined ? options.coalesce : null;
      callbacks.set(callback, { coalesce: coalesce });
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
        this._send({ action: "unsubscribe", url: url });
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

    _error(error, warn) {
      if (warn !== false) {
        console.warn("pushy:", error.message, error.url === undefined ? "" : error.url);
      }
      for (const handler of Array.from(this._errorWatchers)) {
        safeCall(handler, error);
      }
      if (typeof global.dispatchEvent === "function" && typeof CustomEvent === "function") {
        global.dispatchEvent(new CustomEvent("pushy:error", { detail: error }));
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
        case "subscribed":
          this._onSubscribed(message);
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
          break;
        default:
          break; // "pong", "unsubscribed", and types a later version may add
      }
    }

    /* Subscribe, with the last version seen (null: none yet). A gateway that
     * knows versions answers whether it changed since; others ignore it. */
    _sendSubscribe(url) {
      const version = this._versions.has(url) ? this._versions.get(url) : null;
      this._send({ action: "subscribe", url: url, version: version });
    }

    /* Re-subscribed after a reconnect: resync unless the gateway compared
     * versions (it sends a resync of this URL itself when it changed). */
    _onSubscribed(message) {
      const url = message.url;
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

  PushyApp.websocketUrl = websocketUrl;
  global.PushyApp = PushyApp;

  /* Started by {% pushy_scripts %}: configuration from this script tag. */
  const script = typeof document === "undefined" ? null : document.currentScript;
  if (script && script.hasAttribute("data-pushy-autostart")) {
    const app = new PushyApp();
    app.socket_url = script.getAttribute("data-pushy-socket-url") || app.socket_url;
    app.debug = script.getAttribute("data-pushy-debug") === "true";
    global.pushy = app;
    app.init();
  }
})(window);

/*
 * The demo's live page: keeps the server-rendered list of sessions and shots in
 * step with the database, using the `pushy` that {% pushy_scripts %} started.
 *
 * A shot update re-fetches that shot from the API (its get_api_url()); a delete
 * removes it; a resync (after a reconnect) or a session change reloads it all.
 */
(function () {
  "use strict";

  const main = document.getElementById("sessions");
  const status = document.getElementById("pushy-status");
  const lastChange = document.getElementById("last-change");
  const LABELS = {
    connecting: "connecting…",
    open: "live",
    reconnecting: "reconnecting…",
    closed: "offline",
  };

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) {
        throw new Error(url + ": HTTP " + r.status);
      }
      return r.json();
    });
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function shotElement(shot) {
    const li = element("li", "shot");
    li.id = "shot-" + shot.id;
    li.dataset.session = shot.session;
    li.append(element("span", "title", shot.title), " ", element("span", "rating", shot.rating_display));
    return li;
  }

  function sessionElement(session) {
    const section = element("section", "session");
    section.id = "session-" + session.id;
    const heading = element("h2", "", session.name + " ");
    heading.append(element("small", "", session.location));
    const list = element("ul", "shots");
    list.append(...session.shots.map(shotElement));
    section.append(heading, list);
    return section;
  }

  function flash(node) {
    node.classList.remove("changed");
    void node.offsetWidth; // restart the CSS animation
    node.classList.add("changed");
  }

  function note(text) {
    lastChange.textContent = "Last change: " + text;
  }

  function putShot(shot) {
    const list = document.querySelector("#session-" + shot.session + " .shots");
    if (!list) {
      reloadAll(); // a session this page has not seen yet
      return;
    }
    const fresh = shotElement(shot);
    const old = document.getElementById(fresh.id);
    if (old && old.parentNode === list) {
      old.replaceWith(fresh);
    } else {
      if (old) {
        old.remove();
      }
      list.append(fresh);
    }
    flash(fresh);
  }

  let reloadQueued = false;
  /* Several resyncs arrive together (one per subscription): reload once. */
  function reloadAll() {
    if (reloadQueued) {
      return;
    }
    reloadQueued = true;
    setTimeout(function () {
      reloadQueued = false;
      getJSON(main.dataset.sessionListUrl).then(function (sessions) {
        main.replaceChildren(...sessions.map(sessionElement));
      });
    }, 0);
  }

  function onShot(update) {
    if (update.type === "resync") {
      main.dataset.resyncs = Number(main.dataset.resyncs) + 1;
      reloadAll();
      return;
    }
    if (update.type !== "update") {
      return;
    }
    note("shot " + update.pk + " " + update.event + "d");
    if (update.event === "delete") {
      const gone = document.getElementById("shot-" + update.pk);
      if (gone) {
        gone.remove();
      }
      return;
    }
    // A 404 means it was deleted meanwhile; its delete update follows.
    getJSON(update.url).then(putShot, function () {});
  }

  function onSession(update) {
    if (update.type === "update") {
      note("session " + update.pk + " " + update.event + "d");
    }
    if (update.type === "update" || update.type === "resync") {
      reloadAll();
    }
  }

  pushy.on_state(function (state) {
    status.dataset.state = state;
    status.textContent = LABELS[state] || state;
  });
  pushy.subscribe(main.dataset.shotListUrl, onShot);
  pushy.subscribe(main.dataset.sessionListUrl, onSession);
})();

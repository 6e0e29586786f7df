/*
 * pushy's live admin: added to the change form of every pushed model (see
 * pushy/live_admin.py), after pushy.js. It subscribes to the object's API URL
 * and, when someone else saves or deletes the object, shows a banner above the
 * form: "This shot was changed by someone else at 14:02: reload before saving."
 * A save made by this page itself is not "someone else": once the form is
 * submitted, updates are ignored (the page is about to be replaced).
 * It also joins the change form's own URL (presence) and shows who else has it
 * open: "bob (since 14:02) is also editing this shot." Both are subscribed as
 * one object's (the join by pushy.js itself): one channel each on a cluster.
 */
(function (global) {
  "use strict";

  const script = document.currentScript;
  const url = script && script.getAttribute("data-pushy-admin-url");
  const name = (script && script.getAttribute("data-pushy-admin-name")) || "object";
  // The version the form's data is from: a change after it, even one made
  // before the subscription or while offline, comes back as a resync.
  // 0 when Redis could not say as the form was rendered: it always resyncs.
  const attribute = script && script.getAttribute("data-pushy-admin-version");
  const rendered = attribute === null || attribute === "" ? NaN : Number(attribute);
  if (!url || !global.pushy) {
    return;
  }
  let submitting = false;
  document.addEventListener("submit", function () {
    submitting = true;
  }, true);

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  /* A line above the form in the admin's own message style, made once. */
  function messageList(id, role, level) {
    let list = document.getElementById(id);
    if (list) {
      return list;
    }
    list = document.createElement("ul");
    list.id = id;
    list.className = "messagelist";
    list.setAttribute("role", role);
    const item = document.createElement("li");
    item.className = level;
    list.appendChild(item);
    const content = document.getElementById("content") || document.body;
    content.parentNode.insertBefore(list, content);
    return list;
  }

  function show(event) {
    const list = messageList("pushy-admin-banner", "alert", "warning");
    const item = list.firstChild;
    const when = clock(new Date());
    item.textContent = "";
    list.setAttribute("data-event", event);
    if (event === "delete") {
      item.appendChild(document.createTextNode(
        "This " + name + " was deleted by someone else at " + when + "."));
      return;
    }
    const what = event === "resync"
      ? " may have been changed by someone else (noticed at " + when + "): "
      : " was changed by someone else at " + when + ": ";
    item.appendChild(document.createTextNode("This " + name + what));
    const reload = document.createElement("a");
    reload.href = global.location.href;
    reload.textContent = "reload before saving";
    item.appendChild(reload);
    item.appendChild(document.createTextNode("."));
  }

  function heard(message) {
    if (submitting || message.url !== url) {
      return;
    }
    if (message.type === "update") {
      show(message.event);
    } else if (message.type === "resync") {
      // A change this page could not hear of (a resync names only URLs that
      // changed, when the gateway knows versions). A known delete stays shown.
      const shown = document.getElementById("pushy-admin-banner");
      if (!shown || shown.getAttribute("data-event") !== "delete") {
        show("resync");
      }
    }
  }

  const options = Number.isSafeInteger(rendered) && rendered >= 0 ? { version: rendered } : {};
  // The object's own URL: on a Redis Cluster its one channel, not 13.
  options.object = !url.includes("?");
  global.pushy.subscribe(url, heard, options);

  /* Presence: who else has this change form open, above the form. */
  const formUrl = script.getAttribute("data-pushy-admin-presence");

  function names(others) {
    return others.map((person) => person.name + " (since " + clock(new Date(person.since)) + ")");
  }

  function sentence(others, unnamed) {
    const parts = names(others);
    if (unnamed > 0) {
      parts.push(unnamed + (unnamed === 1 ? " other person" : " other people"));
    }
    const last = parts.pop();
    const who = parts.length ? parts.join(", ") + " and " + last : last;
    const verb = others.length + unnamed > 1 ? " are" : " is";
    return who + verb + " also editing this " + name + ".";
  }

  function showPresence(people, count, detail) {
    const mine = people.length - detail.others.length;
    const unnamed = count - mine - detail.others.length;
    if (detail.others.length + unnamed <= 0) {
      const shown = document.getElementById("pushy-admin-presence");
      if (shown) {
        shown.remove();
      }
      return;
    }
    const list = messageList("pushy-admin-presence", "status", "info");
    list.setAttribute("data-count", String(detail.others.length + unnamed));
    list.firstChild.textContent = sentence(detail.others, unnamed);
  }

  if (formUrl && typeof global.pushy.presence === "function") {
    global.pushy.presence(formUrl, showPresence);
  }
})(window);

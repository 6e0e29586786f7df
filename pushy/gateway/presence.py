"""Who else is here: the people joined to a URL, across every gateway.

A client joins a URL it may subscribe to (actions.py: a join is a subscribe
that also makes its connection present). Each gateway keeps, for every URL
one of its connections joined (a ``Room``, rooms.py), the people present there on
every gateway, and tells its joined connections who they are whenever that
changes (``{"type": "presence", ...}``, docs/protocol.md).

Redis holds the shared truth, with work proportional to joins and leaves:

- ``<prefix>:presence:url:<URL>``, a hash: a field per (gateway, person)
  present, ``"<gateway>|<person id>"``, its value ``[name, since]``;
- ``<prefix>:presence:url-set:<gateway>``: the URLs a gateway has entries in;
- ``<prefix>:presence:gateways``, a sorted set: each gateway's id, scored with
  the wall-clock time its heartbeat expires at.

A person's first connection on a URL in this process writes its field and
publishes the change on the control channel ``presence_channel()`` in one
MULTI; the last one's leaving deletes it the same way. Every gateway with a
room for that URL applies the change to the copy it loaded (one HGETALL, in
the same MULTI as its own first join) and sends the new list to its members.

A gateway refreshes its own score every heartbeat (``PRESENCE_HEARTBEAT``),
one ZADD whatever its members. One that stops (killed, cut off) is found
expired by the next heartbeat of another, at most 3 heartbeats after its
last: one gateway claims it (a key with an expiry, so that another takes over
if that one dies too), deletes its fields, publishes that it is gone and takes
it out of the set: its members leave everywhere within 4 heartbeats. A gateway
stopped by a signal does the same for itself at once. A gateway that finds
itself missing from the set (it was taken for dead, or Redis lost its data)
writes its members again and reads its rooms afresh.

A room's list goes to its members here at most once per loop turn, and for a
room of more than ``PACE_MEMBERS`` members at most every ``PACE`` seconds
(bench/results/PRESENCE.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
import gevent.queue
import redis
from django.conf import settings
from django.utils.module_loading import import_string

from pushy import conf
from pushy.channels import presence_channel, presence_key_prefix
from pushy.gateway.questions import Dropped, Refused
from pushy.gateway.rooms import Local, Room, parse_entry
from pushy.gateway.side_redis import side_client
from pushy.logs import Throttled
from pushy.redis_clients import publish

logger = logging.getLogger(__name__)

# A gateway whose heartbeat is this many heartbeats old is taken for dead.
EXPIRY_BEATS = 3
# Gateways taken for dead that one heartbeat clears at most (the rest next time).
REAP_BATCH = 16
# Seconds one gateway has to clear a dead one before another may.
REAP_CLAIM = 60
# Fields deleted per HSCAN step when a dead gateway's entries are cleared.
SCAN_COUNT = 500
# Every change of a room goes to each of its members here: in a room of more
# than PACE_MEMBERS members, the changes of PACE seconds go out as one list, so
# that a busy room costs its members a few messages a second, not one per
# change (10,000 members and 50 changes a second would be 500,000 frames).
PACE_MEMBERS = 100
PACE = 0.25
# Longest name sent (characters); a longer one is cut.
MAX_NAME = 150


def default_name(user: Any) -> str:
    """The default PRESENCE_NAME: the username."""
    return str(user.get_username())


def name_hook() -> Callable[[Any], str]:
    """The function that names a present user (``PRESENCE_NAME``)."""
    path = conf.get("PRESENCE_NAME")
    return default_name if path is None else import_string(path)


def person_id(key: str) -> str:
    """An opaque id of a person, the same on every gateway of the site.

    Keyed with SECRET_KEY: the id names no user pk and no session key, and one
    site's ids mean nothing on another.
    """
    secret = hashlib.sha256(settings.SECRET_KEY.encode()).digest()
    return hashlib.blake2b(key.encode(), key=secret, digest_size=8).hexdigest()


def gateway_id() -> str:
    """This process's id in Redis: host, pid and a random part (a restarted
    process may get its predecessor's pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Presence:
    """The presence of one gateway process (docs/protocol.md, "Presence")."""

    def __init__(
        self,
        redis_url: str,
        limit: int,
        heartbeat: float,
        loop: Any = None,
        gateway: str | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.limit = limit
        self.heartbeat = heartbeat
        self.loop = loop or gevent.get_hub().loop
        self.gateway = gateway or gateway_id()
        self.channel = presence_channel()
        self.prefix = presence_key_prefix()
        self.rooms: dict[str, Room] = {}
        # connection -> {url: person id}: where each connection is present.
        self.joined: dict[Any, dict[str, str]] = {}
        self.dirty = False  # a write failed: write everything again
        self.members = 0  # (connection, URL) presences here, for /stats
        self.name_of = name_hook()
        self._anonymous = 0  # numbers anonymous visitors without a session
        self._log = Throttled(logger)
        # Writes go out one at a time, in order: a leave never overtakes
        # its join on another connection of the pool.
        self.writes: gevent.queue.Queue = gevent.queue.Queue()
        self._runners: list[gevent.Greenlet] = []

    def person(
        self, who: Any, connection: Any = None, url: str | None = None
    ) -> tuple[str, str | None]:
        """The id and name of a visitor (an ``Identity``) joining ``url``: a
        user by their pk (their tabs count once), an anonymous visitor by their
        session (or, without one, as themselves alone), never named."""
        principal = who.read.principal
        if principal is None:  # anonymous, no session: nothing ties tabs
            known = self.joined.get(connection, {}).get(url)
            if known is not None:  # joined again: the same person
                return known, None
            self._anonymous += 1
            return person_id(f"c:{self.gateway}:{self._anonymous}"), None
        if not isinstance(principal, tuple):
            return person_id(f"u:{principal}"), self._name(who.user)
        return person_id(f"s:{principal[1]}"), None

    def _name(self, user: Any) -> str:
        try:
            name = str(self.name_of(user))
        except Exception:
            self._log.log(logging.ERROR, "PRESENCE_NAME failed", exc_info=True)
            name = default_name(user)
        return name[:MAX_NAME] or default_name(user)

    # Keys ----------------------------------------------------------------

    def url_key(self, url: str) -> str:
        return f"{self.prefix}url:{url}"

    def url_set_key(self, gateway: str) -> str:
        return f"{self.prefix}url-set:{gateway}"

    @property
    def gateways_key(self) -> str:
        return f"{self.prefix}gateways"

    def _client(self) -> redis.Redis:
        return side_client(self.redis_url)

    # Joining and leaving (event loop; never blocks) ------------------------

    def is_present(self, connection: Any, url: str) -> bool:
        return url in self.joined.get(connection, ())

    def join(self, connection: Any, url: str, pid: str, name: str | None) -> None:
        """Make ``connection`` present on ``url`` as person ``pid``; it is sent
        the room's list (at once, or once the room is read)."""
        if self.is_present(connection, url):
            room = self.rooms[url]
        else:
            room = self._enter(connection, url, pid, name)
        room.unsent.add(connection)
        if room.loaded:
            self._emit_soon(room)

    def _enter(self, connection: Any, url: str, pid: str, name: str | None) -> Room:
        self.joined.setdefault(connection, {})[url] = pid
        self.members += 1
        room = self.rooms.get(url)
        new_room = room is None
        if new_room:
            room = self.rooms[url] = Room(url)
        room.members.add(connection)
        local = room.local.get(pid)
        if local is not None:  # another tab: nothing changes elsewhere
            local.connections.add(connection)
            return room
        local = room.local[pid] = Local(name, int(time.time() * 1000))
        local.connections.add(connection)
        entry = (name, local.since)
        room.set_entry(self.gateway, pid, entry)
        self.writes.put((self._write_join, (room, pid, entry, new_room)))
        return room

    def leave(self, connection: Any, url: str) -> None:
        """``connection`` leaves ``url`` (a leave, an unsubscribe, a close)."""
        urls = self.joined.get(connection)
        if urls is None or url not in urls:
            return
        pid = urls.pop(url)
        self.members -= 1
        if not urls:
            del self.joined[connection]
        room = self.rooms[url]
        room.members.discard(connection)
        room.unsent.discard(connection)
        local = room.local[pid]
        local.connections.discard(connection)
        if local.connections:
            return
        del room.local[pid]
        room.drop_entry(self.gateway, pid)
        last = not room.local
        if last:
            del self.rooms[url]  # no member here to tell any more
        self.writes.put((self._write_leave, (url, pid, last)))
        if not last and room.loaded:
            self._emit_soon(room)

    # Telling members -------------------------------------------------------

    def _emit_soon(self, room: Room) -> None:
        """Send the room's list once this loop turn's changes are in; a room
        of more than PACE_MEMBERS members here, at most every PACE seconds."""
        if room.emit_due:
            return
        room.emit_due = True
        wait = 0.0
        if len(room.members) > PACE_MEMBERS:
            wait = room.emitted_at + PACE - time.monotonic()
        if wait > 0:
            gevent.spawn_later(wait, self._emit, room)
        else:
            self.loop.run_callback(self._emit, room)

    def _emit(self, room: Room) -> None:
        room.emit_due = False
        if self.rooms.get(room.url) is not room or not room.members:
            return
        frame = room.frame(self.limit)
        # Only who was not told yet, when nothing changed for the others.
        told = room.unsent if frame == room.last_frame else room.members
        if told is room.members:
            room.emitted_at = time.monotonic()
        room.last_frame = frame
        for connection in list(told):
            connection.send(frame)
        room.unsent.clear()

    # Redis writes (greenlets) ----------------------------------------------

    def _write_join(
        self, room: Room, pid: str, entry: tuple[str | None, int], read: bool
    ) -> None:
        """Write this person's entry, publish it, and (first join here) read
        the room: in one MULTI, so the read and the changes heard after it
        follow one another."""
        url = room.url
        field = f"{self.gateway}|{pid}"
        body = json.dumps({"url": url, "field": field, "entry": list(entry)})
        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.hset(self.url_key(url), field, json.dumps(list(entry)))
            pipe.sadd(self.url_set_key(self.gateway), url)
            publish(pipe, self.channel, body)
            if read:
                pipe.hgetall(self.url_key(url))
            answers = pipe.execute()
        except redis.RedisError as e:
            self._failed("write a presence join", e)
            if read:
                self._loaded(room, {})
            return
        if read:
            self._loaded(room, answers[-1])

    def _write_leave(self, url: str, pid: str, last: bool) -> None:
        field = f"{self.gateway}|{pid}"
        body = json.dumps({"url": url, "field": field, "entry": None})
        try:
            pipe = self._client().pipeline(transaction=True)
            pipe.hdel(self.url_key(url), field)
            if last:
                pipe.srem(self.url_set_key(self.gateway), url)
            publish(pipe, self.channel, body)
            pipe.execute()
        except redis.RedisError as e:
            self._failed("write a presence leave", e)

    def _failed(self, what: str, error: Exception) -> None:
        self.dirty = True
        self._log.log(logging.WARNING, "could not %s: %s", what, error)

    def _loaded(self, room: Room, fields: dict) -> None:
        """The room as Redis had it, then the changes heard meanwhile."""
        if self.rooms.get(room.url) is not room:
            return  # everyone here left while it was read
        pending, room.pending = room.pending or [], None
        room.last_frame = None  # everyone hears the room as read
        for raw_field, raw in fields.items():
            field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
            gateway, _, pid = field.partition("|")
            if gateway == self.gateway:
                continue  # ours are known here first-hand
            try:
                room.set_entry(gateway, pid, parse_entry(raw))
            except ValueError:
                continue
        for kind, change in pending:
            self._apply(room, kind, change)
        self._emit_soon(room)

    # Changes heard on the control channel ----------------------------------

    def notice(self, body: bytes) -> None:
        """A change published by a gateway (the listener's control handler)."""
        try:
            change = json.loads(body)
            url = change["url"]
        except (ValueError, KeyError, TypeError):
            self._log.log(logging.WARNING, "ignored a presence notice: not one")
            return
        room = self.rooms.get(url) if isinstance(url, str) else None
        if room is None:
            return
        kind = "gone" if "gone" in change else "field"
        if not room.loaded:
            room.pending.append((kind, change))
            return
        if self._apply(room, kind, change):
            self._emit_soon(room)

    def _apply(self, room: Room, kind: str, change: dict) -> bool:
        """Apply one change to ``room``; whether it was one that could matter."""
        if kind == "gone":
            gone = change.get("gone")
            if not isinstance(gone, str) or gone == self.gateway:
                return False
            room.drop_gateway(gone)
            return True
        field = change.get("field")
        if not isinstance(field, str):
            return False
        gateway, _, pid = field.partition("|")
        if gateway == self.gateway:
            return False  # our own, applied when it happened
        entry = change.get("entry")
        if entry is None:
            room.drop_entry(gateway, pid)
            return True
        try:
            room.set_entry(gateway, pid, parse_entry(json.dumps(entry)))
        except ValueError:
            return False
        return True

    # Heartbeat -------------------------------------------------------------

    def start(self) -> None:
        self._runners = [gevent.spawn(self._run), gevent.spawn(self._write)]

    def stop(self) -> None:
        """Stop, and take this gateway's members out of Redis at once (its
        clients are closed by now): the others need not wait for its expiry."""
        gevent.killall(self._runners, block=False)
        try:
            client = self._client()
            self.reap(client, self.gateway)
            client.zrem(self.gateways_key, self.gateway)
        except redis.RedisError as e:
            logger.warning("presence: could not clear this gateway's members: %s", e)

    def _write(self) -> None:
        for step, args in self.writes:
            try:
                step(*args)
            except Exception:
                self._log.log(logging.ERROR, "a presence write failed", exc_info=True)

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as e:
                self._failed("refresh presence", e)
            except Exception:
                self._log.log(
                    logging.ERROR, "a presence heartbeat failed", exc_info=True
                )
            gevent.sleep(self.heartbeat)

    def beat(self) -> None:
        """Refresh this gateway's score; clear gateways taken for dead."""
        client = self._client()
        now = time.time()
        pipe = client.pipeline(transaction=False)
        expires = now + EXPIRY_BEATS * self.heartbeat
        pipe.zadd(self.gateways_key, {self.gateway: expires})
        pipe.zrangebyscore(self.gateways_key, "-inf", now, start=0, num=REAP_BATCH)
        added, dead = pipe.execute()
        if (added or self.dirty) and self.rooms:
            self.dirty = False
            self.rewrite()
        for gateway in dead:
            gateway = gateway.decode() if isinstance(gateway, bytes) else gateway
            if gateway == self.gateway:
                continue
            # One gateway clears it; were that one to die meanwhile, another
            # takes over once its claim expires (the entry stays in the set
            # until cleared: no member is left behind for good).
            claim = f"{self.prefix}reaping:{gateway}"
            if client.set(claim, self.gateway, nx=True, ex=REAP_CLAIM):
                self.reap(client, gateway)
                client.zrem(self.gateways_key, gateway)
                client.delete(claim)

    def reap(self, client: redis.Redis, gateway: str) -> None:
        """Clear the entries of ``gateway``, taken for dead, and say it is gone."""
        logger.info("presence: gateway %s stopped: its members leave", gateway)
        set_key = self.url_set_key(gateway)
        body_of = lambda url: json.dumps({"url": url, "gone": gateway})  # noqa: E731
        for raw_url in client.sscan_iter(set_key, count=SCAN_COUNT):
            url = raw_url.decode()
            key = self.url_key(url)
            scan = client.hscan_iter(key, match=f"{gateway}|*", count=SCAN_COUNT)
            fields = [field for field, _ in scan]
            pipe = client.pipeline(transaction=True)
            if fields:
                pipe.hdel(key, *fields)
            publish(pipe, self.channel, body_of(url))
            pipe.execute()
        client.delete(set_key)

    def rewrite(self) -> None:
        """Write every entry of ours again, and read each room afresh."""
        logger.info("presence: writing this gateway's %d rooms again", len(self.rooms))
        for room in list(self.rooms.values()):
            # Others' entries may be gone with Redis's data: read them again.
            room.people, room.order, room.anonymous = {}, [], 0
            room.pending = []
            entries = [(p, (x.name, x.since)) for p, x in room.local.items()]
            for pid, entry in entries:
                room.set_entry(self.gateway, pid, entry)
            for i, (pid, entry) in enumerate(entries):
                self.writes.put((self._write_join, (room, pid, entry, i == 0)))


class Recheck:
    """Members whose user may no longer GET their URL leave it.

    A subscription is authorized again when an update reaches it (gate.py);
    a URL joined for presence may never get one (an admin change form), and
    its members would go on hearing who is there after a logout or a removed
    permission. So every ``interval`` (AUTHORIZATION_TTL) each member is
    asked again: from the authorizer's cache, or, once its answer expired, in
    the pool in the connection's own turn. A "no" ends the subscription as a
    revocation does (``revoke``: the gate's), and the presence with it.
    """

    def __init__(
        self,
        presence: Presence,
        authorizer: Any,
        revoke: Callable[[Any, str], object],
        interval: float,
        concurrency: int,
    ) -> None:
        self.presence = presence
        self.authorizer = authorizer
        self.revoke = revoke
        self.interval = interval
        self.concurrency = concurrency

    def run(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.once()
            except Exception:
                logger.exception("presence: a recheck of members failed")

    def once(self) -> None:
        """Ask about every member now; those not cached in a few greenlets."""
        asking = gevent.pool.Pool(self.concurrency)
        for connection, urls in list(self.presence.joined.items()):
            for url in list(urls):
                try:
                    allowed = self.authorizer.allows_now(connection.visitor, url)
                except Exception:
                    allowed = None
                if allowed is None:
                    asking.spawn(self._ask, connection, url)
                elif not allowed:
                    self.revoke(connection, url)
        asking.join()

    def _ask(self, connection: Any, url: str) -> None:
        if connection.closing:
            return
        try:
            allowed = self.authorizer.allows(connection.visitor, url, asker=connection)
        except (Refused, Dropped):
            return  # busy, or gone: asked again next time
        except Exception:
            logger.warning("presence: could not ask about %s", url, exc_info=True)
            return
        if not allowed and self.presence.is_present(connection, url):
            self.revoke(connection, url)

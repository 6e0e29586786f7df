"""Versions: a number per URL that grows with each change, kept in Redis.

Every update is given a version in the same Redis round trip as its PUBLISH
(``PUBLISH_SCRIPT``): ``max(last + 1, Redis TIME in microseconds)``, so versions
only grow, across all URLs, and track the clock closely enough that "older than
``VERSION_TTL``" can be told from a version alone. A collection's version moves
with each of its members'.

Everything the comparison depends on lives in one sorted set, the *book*
(``book_key()``), so that Redis can only lose it whole (an eviction, a flush):

- ``u:<url>``: the URL's latest version (entries older than ``VERSION_TTL`` by
  Redis' clock are pruned a few at a time by the publish script);
- ``:last``: the last version given out;
- ``:given``: the last version given to an update (where the history starts);
- ``:looked``: the last baseline a lookup gave (with ``:given``, tells whether
  something else moved ``:last``: a release without the history);
- ``:epoch:<run_id>:<floor>`` at score -1: the counting now in force began at
  version ``floor`` on the Redis process ``run_id``.

A client version below the floor belongs to an earlier epoch and says nothing.
An epoch ends whenever Redis may have lost or rolled back what the book says:

- the Redis process is not the one that counted (``run_id`` differs: a restart
  that loaded a snapshot or an AOF, a failover to a replica). Noticed by every
  lookup (``LOOKUP_SCRIPT`` reads ``INFO``), so no comparison is ever made
  against a book from another process. These new floors jump ``JUMP`` ahead of
  both the clock and the last version, so that a client holding a version from
  a host whose clock ran ahead, or from a master that had counted further than
  its replica, is still below the new floor;
- the book is gone (flushed, evicted whole): same Redis, same clock, no jump;
  a gateway's horizon (below) puts the floor past what its clients hold;
- a gateway knows a version the book does not (its horizon is past ``:last``:
  Redis went back); the floor is put past it;
- pushy knows changes were made that no version records (``LOSE_SCRIPT``: a
  publisher that had to drop queued updates, a capture process that was down).

Used by the publisher and by the gateway; imports neither.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from pushy import conf

if TYPE_CHECKING:
    import redis

# How far a floor that follows a restart or failover jumps ahead (µs): a
# clock that was that much ahead on the old master, or a replica that much
# behind, still leaves every old version below the new floor.
JUMP = 10 * 60 * 1_000_000
# A gateway's horizon further ahead of Redis' clock than this is not believed
# (a garbage "version" on a channel must not push every version to 2^53).
MAX_AHEAD = 24 * 3600 * 1_000_000
# Old URL entries removed by one publish in 8 (at most 4 per publish on
# average, twice what creates add), so pruning never blocks Redis long.
PRUNE_BATCH = 32

# Lua, the start of every script. KEYS[1] is the book.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local book = KEYS[1]
local function fmt(n) return string.format('%.0f', n) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function epoch()
  -- The epoch has the lowest score (-1): the first member, found in O(1).
  local first = redis.call('ZRANGE', book, 0, 0, 'WITHSCORES')
  if first[2] ~= '-1' then return nil, nil end
  local run, floor = string.match(first[1], '^:epoch:(%w+):(%d+)$')
  return run, tonumber(floor)
end
local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
end
local function last_or(floor)
  return tonumber(redis.call('ZSCORE', book, ':last')) or floor
end
-- Where a history of this book may start: after ":given", the last version
-- given to an update by this script; or after ":last" when something else
-- moved it past both ":given" and ":looked" (a lookup's): a publisher or a
-- gateway of an earlier release, whose updates no history holds.
local function history_start(last)
  local given = tonumber(redis.call('ZSCORE', book, ':given')) or last
  local looked = tonumber(redis.call('ZSCORE', book, ':looked')) or 0
  if last > math.max(given, looked) then return last, true end
  return given, false
end
-- A new epoch: the floor passes the clock, the last version and ``above``.
local function new_epoch(above, jump)
  local last = tonumber(redis.call('ZSCORE', book, ':last')) or 0
  local floor = math.max(now, last + 1, above + 1) + jump
  redis.call('ZREMRANGEBYSCORE', book, -1, -1)
  redis.call('ZADD', book, -1, ':epoch:' .. run_id() .. ':' .. fmt(floor),
             floor, ':last', floor, ':given')
  return floor
end
"""

# Lua, the publish script's history (KEYS[3]): a sorted set of the messages
# published, by version, each stored as "<url>\n<collection>\n<body>", and the
# member ":since", scored S: every message with a version above S is in it.
# A history that is new, expired or evicted starts at the last version given
# to an update before (the book's ":given"; lookups move ":last" past it
# without one), since what came earlier is not in it; trimming (by count, by age)
# moves S up to the last version removed; versions moved without a message
# (nothing to replay) move S to theirs. So S tells a replay whether the
# history holds all of a gap, whatever Redis dropped (REPLAY_SCRIPT).
_HISTORY = """
local history = KEYS[3]
local function history_gap(v)
  redis.call('DEL', history)
  redis.call('ZADD', history, v, ':since')
end
local function history_add(v, given, body, keep, seconds)
  -- NX: ":since" only where there was no history (new, expired, evicted).
  local added = redis.call('ZADD', history, 'NX', fmt(given), ':since',
                           v, ARGV[4] .. '\\n' .. ARGV[5] .. '\\n' .. body)
  -- Ranks: 0 is ":since" (the lowest score), then the messages, oldest first.
  -- Trimmed in batches (up to an eighth of ``keep`` over it, at most 32), and
  -- by age one publish in 8, as the book is pruned: a few commands per publish.
  local drop = redis.call('ZCARD', history) - 1 - keep
  if drop < math.min(32, math.floor(keep / 8) + 1) then drop = 0 end
  if added == 2 or tonumber(v) % 8 == 0 then
    drop = math.max(drop, redis.call('ZCOUNT', history, '-inf',
                                     '(' .. fmt(now - seconds * 1000000)) - 1)
    redis.call('EXPIRE', history, seconds * 2)
  end
  if drop > 0 then
    local edge = redis.call('ZRANGE', history, drop, drop, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', history, 0, drop)
    redis.call('ZADD', history, edge[2], ':since')
  end
end
"""

# Lua: KEYS = book, sender, history; ARGV = ttl, channel, body, url,
# collection or '', seq or '', jump, prune batch, history length (0: none),
# history seconds. The body is the update's JSON object; the version is added
# as its last member, and the message is kept in the history (``_HISTORY``).
# ``seq`` numbers a publisher's sends: a send that repeats one Redis already
# ran (a retry after a timeout) is skipped, so an update is delivered once and
# never after a later one of the same publisher. An empty channel only moves
# the versions (nothing is published).
# Returns {receivers, version}, or {-1, 0} for a repeat.
PUBLISH_SCRIPT = (
    _PRELUDE
    + _HISTORY
    + """
local ttl = tonumber(ARGV[1])
local keep = tonumber(ARGV[9])
if ARGV[6] ~= '' then
  local seq = tonumber(ARGV[6])
  if seq <= (tonumber(redis.call('GET', KEYS[2])) or 0) then return {-1, 0} end
  redis.call('SET', KEYS[2], ARGV[6], 'EX', ttl)
end
local _, floor = epoch()
if not floor then floor = new_epoch(0, 0) end
local last = last_or(floor)
-- Read before pruning (which may take ":given" after a quiet day).
local given = last
if keep > 0 then
  local unknown
  given, unknown = history_start(last)
  if unknown then redis.call('DEL', KEYS[3]) end
end
local version = math.max(last + 1, now)
if version % 8 == 0 then  -- one publish in 8 prunes up to a batch
  local old = redis.call('ZRANGEBYSCORE', book, 0,
                         '(' .. fmt(now - ttl * 1000000), 'LIMIT', 0, ARGV[8])
  if #old > 0 then redis.call('ZREM', book, unpack(old)) end
end
local v = fmt(version)
if ARGV[5] ~= '' then
  redis.call('ZADD', book, v, ':last', v, ':given', v, 'u:' .. ARGV[4],
             v, 'u:' .. ARGV[5])
else
  redis.call('ZADD', book, v, ':last', v, ':given', v, 'u:' .. ARGV[4])
end
if ARGV[2] == '' then
  if keep > 0 then history_gap(v) end
  return {0, v}
end
local body = string.sub(ARGV[3], 1, -2) .. ',"version":' .. v .. '}'
if keep > 0 then history_add(v, given, body, keep, tonumber(ARGV[10])) end
return {redis.call('PUBLISH', ARGV[2], body), v}
"""
)

# Lua: KEYS = book; ARGV = jump, horizon (0: none), max_ahead, url...
# Returns {baseline, floor, now, v...}. The baseline is a version no later
# update can have, at least now: ":last" is moved up to it (a write, so a Redis
# refusing writes (OOM, paused) fails the lookup, and the gateway says so).
LOOKUP_SCRIPT = (
    _PRELUDE
    + """
local jump = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
if horizon > now + tonumber(ARGV[3]) then horizon = 0 end
local run, floor = epoch()
if not floor then
  floor = new_epoch(horizon, 0)
elseif run ~= run_id() then
  floor = new_epoch(horizon, jump)
end
local last = last_or(floor)
if horizon > last then
  floor = new_epoch(horizon, jump)
  last = floor
end
local baseline = fmt(math.max(last, now))
redis.call('ZADD', book, baseline, ':last', baseline, ':looked')
local result = {baseline, fmt(floor), fmt(now)}
for i = 4, #ARGV do
  local v = redis.call('ZSCORE', book, 'u:' .. ARGV[i])
  result[#result + 1] = v and fmt(tonumber(v)) or false
end
return result
"""
)

# Lua: KEYS = book; ARGV = expected floor ('' : any), resync channel ('' : none),
# body. Changes were made that no version records: a new floor (no jump: the
# clock is the same), and a resync request for the connected clients. With an
# expected floor, nothing happens unless it is still the floor in force (many
# gateways noticing one loss move the floor once). Returns the floor in force.
LOSE_SCRIPT = (
    _PRELUDE
    + """
local _, floor = epoch()
if floor and ARGV[1] ~= '' and fmt(floor) ~= ARGV[1] then return fmt(floor) end
floor = new_epoch(0, 0)
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return fmt(floor)
"""
)

# Lua: KEYS = book, history; ARGV = seen, url. The messages about ``url`` (its
# own, or as their collection) published after version ``seen``, oldest first,
# after a 1; or {0} when the history cannot vouch for the whole gap: ``seen``
# is from another epoch or Redis process, or past the last version given out,
# or older than what the history holds (its ":since" above it; without a
# history, an update given a version after it).
REPLAY_SCRIPT = (
    _PRELUDE
    + """
local seen = tonumber(ARGV[1])
local run, floor = epoch()
if not floor or run ~= run_id() or seen < floor or seen > last_or(floor) then
  return {0}
end
local start = history_start(last_or(floor))
-- No history (none kept yet, expired, evicted): it would start at ":given".
local since = redis.call('ZSCORE', KEYS[2], ':since') or start
if tonumber(since) > seen then return {0} end
-- The last update given a version must be in it: publishers that keep no
-- history (HISTORY_LENGTH 0, an earlier release) still give versions.
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2] or since
if tonumber(newest) < start then return {0} end
local found = {1}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. fmt(seen), '+inf')) do
  local a = string.find(m, '\\n', 1, true)
  local b = string.find(m, '\\n', a + 1, true)
  if string.sub(m, 1, a - 1) == ARGV[2] or string.sub(m, a + 1, b - 1) == ARGV[2] then
    found[#found + 1] = string.sub(m, b + 1)
  end
end
return found
"""
)

# Each script's SHA1, as EVALSHA names it (``call()``).
_SHAS = {
    script: hashlib.sha1(script.encode()).hexdigest()
    for script in (PUBLISH_SCRIPT, LOOKUP_SCRIPT, LOSE_SCRIPT, REPLAY_SCRIPT)
}

# Bytes the publish script may add to a body (',"version":' and 16 digits).
VERSION_ROOM = 32


def prefix() -> str:
    # A hash tag ({...}): on a Redis Cluster every version key is in one slot,
    # as one script's keys must be.
    return "{" + conf.get("CHANNEL_PREFIX") + ":version}:"


def book_key() -> str:
    """The sorted set holding every URL's version, the last one and the epoch."""
    return prefix() + "book"


def sender_key(sender: str) -> str:
    """The last ``seq`` a publisher's sends reached (see PUBLISH_SCRIPT)."""
    return prefix() + "sender:" + sender


def history_key() -> str:
    """The sorted set of recent messages, for returning clients (``_HISTORY``)."""
    return prefix() + "history"


def url_member(url: str) -> str:
    return "u:" + url


def publish_args(
    ttl: int, channel: str, body: bytes, url: str, collection: str | None, seq: str
) -> list:
    """ARGV for PUBLISH_SCRIPT (KEYS: ``book_key()``, ``sender_key(...)``,
    ``history_key()``)."""
    return [
        ttl, channel, body, url, collection or "", seq, JUMP, PRUNE_BATCH,
        conf.get("HISTORY_LENGTH"), conf.get("HISTORY_SECONDS"),
    ]  # fmt: skip


def lookup_args(urls: list[str], horizon: int | None = None) -> list:
    """ARGV for LOOKUP_SCRIPT (KEYS: ``book_key()``)."""
    return [JUMP, horizon or 0, MAX_AHEAD, *urls]


def lose_args(expected: int | None = None, channel: str = "", body: str = "") -> list:
    """ARGV for LOSE_SCRIPT (KEYS: ``book_key()``): the floor the caller saw
    (None: any), and the resync request to publish (no channel: none)."""
    return ["" if expected is None else expected, channel, body]


def call(script: str, keys: Sequence[str], args: Sequence) -> tuple:
    """The command that runs a version script: EVALSHA of its SHA1.

    The one way every version script is run, alone (``run()``) or in the
    sender's pipelines: Redis answers NOSCRIPT when it does not hold the
    script (a restart, ``SCRIPT FLUSH``), and the caller sends ``load()``
    before the call again.
    """
    return ("EVALSHA", _SHAS[script], len(keys), *keys, *args)


def load(script: str) -> tuple:
    """The command that makes Redis hold ``script`` for ``call()`` (one word,
    as redis-py's ``script_load`` sends it: its reply and routing are the same)."""
    return ("SCRIPT LOAD", script)


def run(client: redis.Redis, script: str, args: list, keys: Sequence[str] = ()) -> Any:
    """Run a version script (KEYS: ``keys``, by default ``book_key()``) in a
    round trip of its own: ``call()``, then ``load()`` and the call again if
    Redis answers NOSCRIPT. (The sender pipelines ``call()`` and ``load()``
    itself: pushy/sending.py.)
    """
    command = call(script, keys or [book_key()], args)
    try:
        return client.execute_command(*command)
    except NoScriptError:
        client.execute_command(*load(script))
        return client.execute_command(*command)


def lookup(
    client: redis.Redis, urls: list[str], horizon: int | None = None
) -> Snapshot:
    """LOOKUP_SCRIPT's answer about ``urls`` (on a cluster, every book's)."""
    if _is_cluster(client):
        from pushy import redis_cluster

        return redis_cluster.lookup(client, urls, [horizon] * redis_cluster.BUCKETS)
    return Snapshot.from_reply(
        urls, run(client, LOOKUP_SCRIPT, lookup_args(urls, horizon))
    )


def lose(
    client: redis.Redis, expected: int | None = None, channel: str = "", body: str = ""
) -> int:
    """LOSE_SCRIPT: a new epoch (and the resync request, if a channel is given);
    the floor in force after it. On a cluster, every book's (``expected`` is
    not looked at: each book has its own floor)."""
    if _is_cluster(client):
        from pushy import redis_cluster

        return redis_cluster.lose(client, channel, body)
    return int(run(client, LOSE_SCRIPT, lose_args(expected, channel, body)))


def replay_args(url: str, seen: int) -> list:
    """ARGV for REPLAY_SCRIPT (KEYS: ``book_key()``, ``history_key()``)."""
    return [seen, url]


def replay(client: redis.Redis, url: str, seen: int) -> list[bytes] | None:
    """The messages about ``url`` (its own, or its members' as a collection)
    published after version ``seen``, oldest first; None when the history
    cannot vouch that it holds all of them (see REPLAY_SCRIPT)."""
    if _is_cluster(client):
        from pushy import redis_cluster

        return redis_cluster.replay(client, url, seen)
    keys = [book_key(), history_key()]
    reply = run(client, REPLAY_SCRIPT, replay_args(url, seen), keys)
    if not reply or int(reply[0]) != 1:
        return None
    return list(reply[1:])


def version_of(body: bytes) -> int:
    """The version a published message carries (the script adds it last)."""
    return int(body[body.rindex(b":") + 1 : -1])


def _is_cluster(client: object) -> bool:
    return type(client).__name__ == "RedisCluster"


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What Redis said about some URLs' versions at one instant."""

    baseline: int
    floor: int
    now: int
    versions: dict[str, int | None]

    @classmethod
    def from_reply(cls, urls: list[str], reply: list) -> Snapshot:
        baseline, floor, now, *found = reply
        return cls(
            baseline=int(baseline),
            floor=int(floor),
            now=int(now),
            versions={
                url: None if not v else int(v)
                for url, v in zip(urls, found, strict=True)
            },
        )

    def with_versions(self, other: Snapshot) -> Snapshot:
        """This snapshot with the URL versions of a later one (chunked lookups)."""
        return dataclasses.replace(self, versions={**self.versions, **other.versions})

    def changed_since(self, url: str, seen: int, ttl: float) -> bool:
        """Whether ``url`` may have changed after version ``seen``.

        True when it did, and when that cannot be known: ``seen`` is from an
        earlier epoch (below the floor) or from a later one than Redis knows
        (past the baseline: Redis went back), or ``url`` has no version and
        ``seen`` is older than ``ttl`` seconds (it may have been pruned).
        """
        if seen < self.floor or seen > self.baseline:
            return True
        current = self.versions.get(url)
        if current is not None:
            return current > seen
        return self.now - seen >= ttl * 1_000_000


def valid_version(value: object) -> bool:
    """A version as a client may send it: a non-negative int (not bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

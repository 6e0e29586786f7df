"""Versions: a number per URL that grows with each change, kept in Redis.

Every update is given a version in the same Redis round trip as its PUBLISH
(``PUBLISH_SCRIPT``): ``max(last + 1, Redis TIME in microseconds)``, so versions
only grow, across all URLs, and track the clock closely enough that "older than
``VERSION_TTL``" can be told from a version alone. The script stores it under the
object's URL and under its collection's (a collection's version moves with each
of its members'), both expiring after ``VERSION_TTL`` seconds.

A client that reconnects sends the last version it saw per URL; the gateway
(``LOOKUP_SCRIPT``, ``changed_since``) answers with a resync of that URL only if
it changed since, or if that cannot be known: the versions were lost (Redis
restarted empty: the ``floor``, set when counting (re)starts, is newer than the
client's version) or expired. See docs/protocol.md, "Versions".

Used by the publisher and by the gateway; imports neither.
"""

from __future__ import annotations

import dataclasses
import hashlib

from pushy import conf

# Lua, the start of both scripts: ``now`` from Redis' clock, ``last`` (KEYS[1]),
# and the floor (KEYS[2]) set to now when counting (re)starts.
_CLOCK = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]))
if not last or not redis.call('GET', KEYS[2]) then
  redis.call('SET', KEYS[2], string.format('%.0f', now))
end
"""

# Lua: KEYS = last, floor, url[, collection]; ARGV = ttl, channel, body.
# The body is the update's JSON object; the version is added as its last member.
PUBLISH_SCRIPT = (
    _CLOCK
    + """last = last or 0
local version = string.format('%.0f', math.max(last + 1, now))
redis.call('SET', KEYS[1], version)
redis.call('SET', KEYS[3], version, 'EX', ARGV[1])
if KEYS[4] then redis.call('SET', KEYS[4], version, 'EX', ARGV[1]) end
local body = string.sub(ARGV[3], 1, -2) .. ',"version":' .. version .. '}'
return {redis.call('PUBLISH', ARGV[2], body), version}
"""
)

PUBLISH_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()

# Lua: KEYS = last, floor, url...; returns {baseline, floor or false, now, v...}.
# The baseline is a version no later update can have, and it is at least now:
# "last" is moved up to it, so a client holding it is "up to date as of now".
LOOKUP_SCRIPT = (
    _CLOCK
    + """local baseline = math.max(last or 0, now)
redis.call('SET', KEYS[1], string.format('%.0f', baseline))
local result = {string.format('%.0f', baseline), redis.call('GET', KEYS[2]),
                string.format('%.0f', now)}
for i = 3, #KEYS do result[#result + 1] = redis.call('GET', KEYS[i]) end
return result
"""
)


# Bytes the publish script may add to a body (',"version":' and 16 digits).
VERSION_ROOM = 32


LOOKUP_SHA = hashlib.sha1(LOOKUP_SCRIPT.encode()).hexdigest()


def prefix() -> str:
    # A hash tag ({...}): on a Redis Cluster every version key is in one slot,
    # as one script's keys must be.
    return "{" + conf.get("CHANNEL_PREFIX") + ":version}:"


def last_key() -> str:
    """The last version given out (no expiry)."""
    return prefix() + ":last"


def floor_key() -> str:
    """The version counting (re)started at: older versions say nothing."""
    return prefix() + ":floor"


def url_key(url: str) -> str:
    # The ":url:" part keeps URLs apart from the two keys above.
    return prefix() + "url:" + url


def publish_keys(url: str, collection: str | None) -> list[str]:
    keys = [last_key(), floor_key(), url_key(url)]
    if collection:
        keys.append(url_key(collection))
    return keys


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What Redis said about some URLs' versions at one instant."""

    baseline: int
    floor: int | None
    now: int
    versions: dict[str, int | None]

    @classmethod
    def from_reply(cls, urls: list[str], reply: list) -> Snapshot:
        baseline, floor, now, *found = reply
        return cls(
            baseline=int(baseline),
            floor=None if floor is None else int(floor),
            now=int(now),
            versions={
                url: None if v is None else int(v)
                for url, v in zip(urls, found, strict=True)
            },
        )

    def with_versions(self, other: Snapshot) -> Snapshot:
        """This snapshot with the URL versions of a later one (chunked lookups)."""
        return dataclasses.replace(self, versions={**self.versions, **other.versions})

    def changed_since(self, url: str, seen: int, ttl: float) -> bool:
        """Whether ``url`` may have changed after version ``seen``.

        True when it did, and when that cannot be known: counting restarted
        after ``seen`` (the versions were lost), or ``url`` has no version and
        ``seen`` is older than ``ttl`` seconds (it may have expired).
        """
        if self.floor is None or seen < self.floor:
            return True
        current = self.versions.get(url)
        if current is not None:
            return current > seen
        return self.now - seen >= ttl * 1_000_000


def valid_version(value: object) -> bool:
    """A version as a client may send it: a non-negative int (not bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

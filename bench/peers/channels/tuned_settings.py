"""Settings for Channels tuned for the benchmark's load: capacity and expiry.

channels_redis (the core ``RedisChannelLayer``) bounds each channel at
``capacity`` messages, 100 by default, in two places: the Redis key that a
``group_send`` adds to for each daphne process (a message past it is not
sent) and each consumer's buffer in that process (past it the oldest message
is dropped). A burst of 200 updates overruns both by design: a site that
expects such bursts raises ``capacity`` above them. ``CAPACITY`` is five
bursts.

The process reads its Redis key only when a consumer's buffer runs empty, so
while its consumers are busy the rest of a burst waits in Redis, and a message
that waited ``expiry`` seconds (60 by default) is dropped. At 1,000 subscribers
daphne needs about two minutes for a burst of 200 here, so ``EXPIRY`` is five
minutes: an update that waits is delivered late, never dropped. Everything
else is ``bench.peers.channels.settings``.
"""

import copy

from bench.peers.channels.settings import *  # noqa: F403
from bench.peers.channels.settings import CHANNEL_LAYERS

CAPACITY = 1000
EXPIRY = 300

CHANNEL_LAYERS = copy.deepcopy(CHANNEL_LAYERS)
CHANNEL_LAYERS["default"]["CONFIG"].update(capacity=CAPACITY, expiry=EXPIRY)

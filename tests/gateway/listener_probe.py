"""Run the gateway's Redis listener alone, as runpushy does (gevent, patched
sockets), printing what it reports: ``idle`` or an update's pk, one per line.

    python -m tests.gateway.listener_probe <redis url> <pattern>
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import gevent  # noqa: E402

from pushy.gateway.listener import Hooks, Listener  # noqa: E402


def say(line: object) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def main() -> None:
    url, pattern = sys.argv[1:3]
    listener = Listener(
        url,
        pattern,
        Hooks(
            update=lambda update: say(update.pk),
            resync=lambda: None,
            count=lambda name: None,
            subscribed=lambda: say("subscribed"),
            idle=lambda: say("idle"),
        ),
    )
    listener.start()
    gevent.wait()


if __name__ == "__main__":
    main()

import redis
from django.core.management.base import BaseCommand, CommandError

from pushy import cluster_balance, conf, redis_cluster
from pushy.cluster_balance import BalanceError


class Command(BaseCommand):
    help = (
        "Redis Cluster mode: count each bucket's publishes over a window, place "
        "the buckets' slots on the masters so that the busiest carries the least, "
        "and migrate the slots that move (--dry-run: only print the plan)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--window",
            type=float,
            default=60.0,
            help="seconds of publishes to count (default 60)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print the plan, move nothing"
        )
        parser.add_argument(
            "--finish",
            action="store_true",
            help="only complete the slot migrations a run left half-way",
        )

    def handle(self, *args, window, dry_run, finish, **options):
        url = conf.get("REDIS_URL")
        if not redis_cluster.is_cluster_url(url):
            raise CommandError("REDIS_URL does not name a Redis Cluster")
        if window < 0:
            raise CommandError("--window must be 0 or more seconds")
        try:
            cluster = redis_cluster.client(url)
        except redis.RedisError as e:
            raise CommandError(f"the cluster could not be reached: {e}") from e
        nodes = []
        try:
            with redis_cluster.redis_errors():
                nodes = cluster_balance.masters(cluster, url)
                if finish:
                    self._finish(nodes)
                else:
                    self._balance(cluster, nodes, window, dry_run)
        except BalanceError as e:
            raise CommandError(str(e)) from e
        except redis.RedisError as e:
            raise CommandError(f"Redis: {e}") from e
        finally:
            for node in nodes:
                node.client.close()
            cluster.close()

    def _finish(self, nodes):
        done = cluster_balance.finish(nodes, self._step)
        if not done:
            self.stdout.write("No slot migration is half-way.")
        for migration in done:
            self.stdout.write(
                f"Finished: slot {migration.slot} now on {migration.target}"
            )

    def _balance(self, cluster, nodes, window, dry_run):
        left = cluster_balance.open_migrations(nodes)
        if left:
            raise BalanceError(
                "slot migrations are half-way: "
                + ", ".join(f"{m.slot} ({m.source} -> {m.target})" for m in left)
                + ". Run with --finish first."
            )
        self.stdout.write(f"Counting each bucket's publishes for {window:g} s...")
        loads = cluster_balance.counts(cluster, window)
        current = cluster_balance.owners(nodes)
        names = [node.name for node in nodes]
        placement = cluster_balance.plan(loads, current, names)
        self._print_plan(loads, current, placement, names)
        moving = cluster_balance.moves(current, placement)
        if dry_run or not moving:
            self.stdout.write("Nothing moved." if moving else "Nothing to move.")
            return
        keys = cluster_balance.apply(nodes, current, placement, self._step)
        self.stdout.write(f"Moved {len(moving)} buckets' slots ({keys} keys).")

    def _print_plan(self, loads, current, placement, names):
        total = sum(loads)
        self.stdout.write(f"Publishes counted: {total}")
        slots = cluster_balance.bucket_slots()
        for number, load in enumerate(loads):
            move = (
                ""
                if current[number] == placement[number]
                else " -> " + (placement[number])
            )
            share = load / total if total else 0
            self.stdout.write(
                f"  bucket {number:2} (slot {slots[number]:5}): {load} "
                f"({share:.0%}) on {current[number]}{move}"
            )
        before = cluster_balance.shares(loads, current, names)
        after = cluster_balance.shares(loads, placement, names)
        self.stdout.write("Share of the publishes per master (before -> after):")
        for name in names:
            self.stdout.write(f"  {name}: {before[name]:.0%} -> {after[name]:.0%}")
        self.stdout.write(
            f"Busiest master: {max(before.values()):.0%} -> {max(after.values()):.0%}"
        )

    def _step(self, text):
        self.stdout.write("  " + text)
        self.stdout.flush()

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pushy import conf, redis_cluster
from pushy.exceptions import InvalidUpdate, PublishError
from pushy.explain import ask_gateways, decide, lag_bound
from pushy.management.lookup import load_object
from pushy.messages import UPDATE
from pushy.updates import build_update, checked_body, model_label


class Command(BaseCommand):
    help = (
        "Explain how a change to one object reaches browsers: the update a save "
        "publishes, the gateways listening, their subscribers, and (--user) "
        "whether a user may subscribe."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", help="app_label.model_name")
        parser.add_argument("pk", help="primary key of the object")
        parser.add_argument("--user", help="username whose subscription to check")

    def handle(self, *args, model, pk, user, **options):
        instance = load_object(model, pk)
        label = model_label(instance)
        if label not in conf.model_labels():
            raise CommandError(
                f"{label} is not in PUSHY_SETTINGS['MODELS']: its saves publish "
                f"nothing. Add {label!r} to MODELS."
            )
        person = self._user(user) if user else None
        try:
            update = build_update(instance, UPDATE)
            body = checked_body(update)
        except InvalidUpdate as e:
            raise CommandError(f"a save of this object publishes nothing: {e}") from e
        self._update(update, body)
        urls = [update.url] + ([update.collection] if update.collection else [])
        reached = self._gateways(urls)
        if person is not None:
            self._authorization(person, update)
        if not reached:
            raise CommandError("Redis could not be reached: see above")

    def _update(self, update, body):
        self.stdout.write("A save publishes:")
        cluster = redis_cluster.enabled()
        channels = redis_cluster.channels_of(update) if cluster else [update.channel]
        self.stdout.write(f"  channel: {', '.join(channels)}")
        self.stdout.write(f"  body: {body.decode()}")
        limit = conf.get("MAX_UPDATE_BYTES")
        self.stdout.write(f"  size: {len(body):,} bytes (MAX_UPDATE_BYTES {limit:,})")

    def _gateways(self, urls):
        """Print what the gateways answer; False when Redis cannot be reached."""
        try:
            counts = ask_gateways(urls)
        except PublishError as e:
            self.stdout.write(f"Gateway processes listening on Redis: unknown ({e})")
            self.stdout.write("  saves cannot be published either while this lasts")
            return False
        self.stdout.write(f"Gateway processes listening on Redis: {counts.listening}")
        if counts.listening == 0:
            self.stdout.write(
                "  none: no runpushy is subscribed to this Redis and CHANNEL_PREFIX "
                f"({conf.get('CHANNEL_PREFIX')!r}); start manage.py runpushy"
            )
            return True
        for answer in counts.answers:
            per_url = ", ".join(f"{url}: {n}" for url, n in answer["urls"].items())
            self.stdout.write(
                f"  {answer['gateway']}: {answer['connections']} connections; "
                f"subscribed to {per_url}"
            )
            self.stdout.write(f"    {_delivery(answer.get('delivery'))}")
        missing = counts.listening - len(counts.answers)
        if missing:
            self.stdout.write(
                f"  {missing} did not answer in time (an older pushy, another "
                "subscriber to the pattern, or a busy gateway)"
            )
        totals = ", ".join(f"{url}: {counts.total(url)}" for url in urls)
        self.stdout.write(f"  connections subscribed in all: {totals}")
        return True

    def _authorization(self, person, update):
        name = getattr(person, person.USERNAME_FIELD)
        self.stdout.write(f"User {name!r}:")
        allowed, why = decide(person, update.url)
        verdict = "allowed" if allowed else "refused (forbidden)"
        self.stdout.write(f"  subscribe to {update.url}: {verdict}; {why}")
        if update.collection:
            ok, why = decide(person, update.collection)
            verdict = "allowed" if ok else "refused (forbidden)"
            self.stdout.write(f"  subscribe to {update.collection}: {verdict}; {why}")
            receives = "receives" if allowed else "does not receive"
            self.stdout.write(
                f"  as a subscriber of {update.collection}, {receives} this "
                f"object's updates (needs {update.url} allowed)"
            )
        ttl = conf.get("AUTHORIZATION_TTL")
        self.stdout.write(f"  (gateways keep a decision for up to {ttl}s)")

    def _user(self, username):
        User = get_user_model()
        try:
            return User._default_manager.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None


def _delivery(histogram):
    """How fast a gateway's updates reached its sockets, in words."""
    if not histogram or not histogram.get("count"):
        return "no update delivered since it started (or an older pushy)"
    return (
        f"{histogram['count']} updates delivered since it started, half within "
        f"{lag_bound(histogram, 0.5)}, 99% within {lag_bound(histogram, 0.99)} of "
        "their commit"
    )

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from pushy import conf
from pushy.api import broadcast
from pushy.checks import closest
from pushy.exceptions import InvalidUpdate, ModelNotConfigured, PublishError
from pushy.messages import EVENTS, UPDATE


class Command(BaseCommand):
    help = "Publish an update for one object by hand, as a save would."

    def add_arguments(self, parser):
        parser.add_argument("model", help="app_label.model_name, as in MODELS")
        parser.add_argument("pk", help="primary key of the object")
        parser.add_argument("--event", choices=EVENTS, default=UPDATE)

    def handle(self, *args, model, pk, event, **options):
        instance = self._load(model, pk)
        try:
            update, receivers = broadcast(instance, event)
        except (ModelNotConfigured, InvalidUpdate, PublishError) as e:
            raise CommandError(e) from e
        self.stdout.write(f"channel: {update.channel}")
        self.stdout.write(f"body: {update.encode().decode()}")
        if receivers:
            self.stdout.write(f"received by {receivers} gateway process(es)")
        else:
            self.stdout.write("received by 0 gateway processes: none is listening")

    def _load(self, label, pk):
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            raise CommandError(self._unknown_model(label)) from None
        try:
            return model._default_manager.get(pk=pk)
        except model.DoesNotExist:
            raise CommandError(f"{label} has no object with pk {pk!r}") from None
        except (ValueError, ValidationError) as e:
            raise CommandError(f"{pk!r} is not a valid pk for {label}: {e}") from e

    def _unknown_model(self, label):
        labels = [m._meta.label_lower for m in apps.get_models()]
        pushed = sorted(conf.model_labels())
        guess = closest(label, pushed) or closest(label, labels)
        if guess is None and "." not in label:
            # A bare model name: find it in any app.
            names = {m._meta.model_name: m._meta.label_lower for m in apps.get_models()}
            guess = names.get(label.lower())
        message = f"unknown model {label!r}: expected app_label.model_name"
        if guess:
            return f"{message}; did you mean {guess!r}?"
        example = pushed[0] if pushed else "photosession.shot"
        return f"{message}, for example {example!r}"

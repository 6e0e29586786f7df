from django.core.management.base import BaseCommand, CommandError

from pushy.api import broadcast
from pushy.exceptions import InvalidUpdate, ModelNotConfigured, PublishError
from pushy.management.lookup import load_object
from pushy.messages import EVENTS, UPDATE


class Command(BaseCommand):
    help = "Publish an update for one object by hand, as a save would."

    def add_arguments(self, parser):
        parser.add_argument("model", help="app_label.model_name, as in MODELS")
        parser.add_argument("pk", help="primary key of the object")
        parser.add_argument("--event", choices=EVENTS, default=UPDATE)

    def handle(self, *args, model, pk, event, **options):
        instance = load_object(model, pk)
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

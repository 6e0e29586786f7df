from django.apps import AppConfig


class PushyConfig(AppConfig):
    name = "pushy"
    verbose_name = "pushy"

    def ready(self) -> None:
        from pushy import checks, signals

        checks.register()
        signals.connect()

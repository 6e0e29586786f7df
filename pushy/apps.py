from django.apps import AppConfig


class PushyConfig(AppConfig):
    name = "pushy"
    verbose_name = "pushy"

    def ready(self) -> None:
        from django.apps import apps
        from django.db.models.signals import post_migrate

        from pushy import checks, deploy_checks, signals
        from pushy.capture import checks as capture_checks
        from pushy.capture import triggers

        checks.register()
        deploy_checks.register()
        capture_checks.register()
        signals.connect()
        # Like contenttypes' rows: each migrate leaves the triggers in place.
        post_migrate.connect(
            triggers.install_after_migrate, dispatch_uid="pushy.capture.triggers"
        )
        if apps.is_installed("django.contrib.admin"):
            from pushy import live_admin

            live_admin.install()

class CaptureRouter:
    """captureapp lives only in the PostgreSQL alias "capture"; nothing else does."""

    def db_for_read(self, model, **hints):
        return "capture" if model._meta.app_label == "captureapp" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        if app_label == "captureapp":
            return db == "capture"
        return False if db == "capture" else None

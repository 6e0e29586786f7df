"""Models captured by PostgreSQL triggers in the capture tests (alias "capture")."""

from django.db import models


class Item(models.Model):
    """Captured; integer pk, sends data, collection /api/item/."""

    title = models.CharField(max_length=100)

    def get_api_url(self):
        return f"/api/item/{self.pk}/"

    def get_pushy_data(self):
        return {"title": self.title}


class Tag(models.Model):
    """Captured, with a string primary key."""

    slug = models.CharField(max_length=100, primary_key=True)

    def get_api_url(self):
        return f"/api/tag/{self.slug}/"

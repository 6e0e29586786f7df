"""The original README's example: photo sessions and their shots, both pushed."""

from django.conf import settings
from django.db import models
from django.urls import reverse


class Session(models.Model):
    name = models.CharField(max_length=100)
    location = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return self.name

    def get_api_url(self):
        return reverse("session-detail", args=[self.pk])


class Shot(models.Model):
    RATINGS = [(n, "★" * n + "☆" * (5 - n)) for n in range(6)]

    session = models.ForeignKey(Session, related_name="shots", on_delete=models.CASCADE)
    title = models.CharField(max_length=100)
    rating = models.PositiveSmallIntegerField(choices=RATINGS, default=0)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return self.title

    def get_api_url(self):
        return reverse("shot-detail", args=[self.pk])

    def get_api_list_url(self):
        # Subscribers of the list hear about every shot, created ones included.
        return reverse("shot-list")


class Order(models.Model):
    """A user's order of prints of a shot: private to that user.

    Its API lists a user's own orders only and shows one only to its owner, so
    pushy (whose default authorization asks that API) pushes each order's
    updates to its owner alone.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="orders", on_delete=models.CASCADE
    )
    shot = models.ForeignKey(Shot, related_name="orders", on_delete=models.CASCADE)
    copies = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.copies} x {self.shot}"

    def get_api_url(self):
        return reverse("order-detail", args=[self.pk])

    def get_api_list_url(self):
        return reverse("order-list")

    def get_pushy_data(self):
        # Only what the order's own URL shows its owner: safe to push (see
        # README, "Security model": only the owner may GET it).
        return {"shot": self.shot_id, "copies": self.copies}

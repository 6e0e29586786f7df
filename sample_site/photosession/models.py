"""The original README's example: photo sessions and their shots, both pushed."""

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

from django.db import models


class Item(models.Model):
    """What the benchmark saves; its title carries the save's sequence and time."""

    title = models.CharField(max_length=100)

    def get_api_url(self):
        return f"/api/item/{self.pk}/"

    def get_api_list_url(self):
        return "/api/item/"

    def get_pushy_data(self):
        return {"title": self.title}

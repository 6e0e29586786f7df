from django.db import models


class Item(models.Model):
    """What the benchmark saves; its title carries the save's sequence and time."""

    title = models.CharField(max_length=100)
    # What the item view checks (bench/site/urls.py): hidden items, and items of a
    # level above 10, are 404s. bench.authz's visibility scenario moves the level
    # between 0 and 1: a declared field changes, nobody loses the item.
    hidden = models.BooleanField(default=False)
    level = models.IntegerField(default=0)

    def get_api_url(self):
        return f"/api/item/{self.pk}/"

    def get_api_list_url(self):
        return "/api/item/"

    def get_pushy_data(self):
        return {"title": self.title}

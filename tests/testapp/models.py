from django.db import models
from django.urls import reverse


class Session(models.Model):
    """Pushed; its collection is the parent of its URL."""

    name = models.CharField(max_length=100)

    def get_api_url(self):
        return reverse("session-detail", args=[self.pk])


class Shot(models.Model):
    """Pushed; names its collection explicitly and sends data."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, null=True)
    title = models.CharField(max_length=100)

    def get_api_url(self):
        return reverse("shot-detail", args=[self.pk])

    def get_api_list_url(self):
        return reverse("shot-list")

    def get_pushy_data(self):
        return {"title": self.title}


class Note(models.Model):
    """Pushed, with a string primary key."""

    slug = models.SlugField(primary_key=True)

    def get_api_url(self):
        return f"/api/note/{self.slug}/"


class Unpushed(models.Model):
    """Not in MODELS."""

    name = models.CharField(max_length=100)

    def get_api_url(self):
        return f"/api/unpushed/{self.pk}/"


class Product(models.Model):
    """A site without an API: its only URL is get_absolute_url()."""

    name = models.CharField(max_length=100)

    def get_absolute_url(self):
        return reverse("product-detail", args=[self.pk])


class NoUrl(models.Model):
    """Has no get_api_url(): naming it in MODELS is a check error."""

    name = models.CharField(max_length=100)


class Document(models.Model):
    """Not pushed by default; its owner alone may GET it (tests of authorization)."""

    owner = models.ForeignKey("auth.User", on_delete=models.CASCADE)
    title = models.CharField(max_length=100)

    def get_api_url(self):
        return reverse("document-detail", args=[self.pk])

    def get_api_list_url(self):
        return reverse("document-list")

    def get_pushy_data(self):
        return {"title": self.title}


class _Publishable(models.Model):
    """Shown to everyone once published, to its author always (tests of visibility)."""

    author = models.ForeignKey("auth.User", on_delete=models.CASCADE, null=True)
    published = models.BooleanField(default=False)
    title = models.CharField(max_length=100)

    class Meta:
        abstract = True

    def get_pushy_data(self):
        return {"title": self.title}


class Post(_Publishable):
    """Pushed, in VISIBILITY_FIELDS (``published``, ``author``)."""

    def get_api_url(self):
        return reverse("post-detail", args=[self.pk])

    def get_api_list_url(self):
        return reverse("post-list")


class Article(_Publishable):
    """Pushed, not in VISIBILITY_FIELDS: every update may change who sees it."""

    def get_api_url(self):
        return reverse("article-detail", args=[self.pk])

    def get_api_list_url(self):
        return reverse("article-list")

from django.apps import AppConfig


class PhotosessionConfig(AppConfig):
    name = "sample_site.photosession"
    label = "photosession"
    verbose_name = "Photo sessions"

from django.contrib import admin
from django.urls import include, path

from sample_site.photosession import api, views

urlpatterns = [
    path("", views.sessions, name="sessions"),
    path("api/v1/", include(api.router.urls)),
    path("admin/", admin.site.urls),
]

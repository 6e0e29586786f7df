from django.contrib import admin
from django.urls import include, path

from sample_site.photosession import api, views

urlpatterns = [
    path("", views.sessions, name="sessions"),
    path("nojs/", views.nojs, name="nojs"),
    path("htmx/", views.htmx, name="htmx"),
    path("htmx/rows/", views.htmx_rows, name="htmx-rows"),
    path("htmx/row/<int:pk>/", views.htmx_row, name="htmx-row"),
    path("api/v1/", include(api.router.urls)),
    path("admin/", admin.site.urls),
]

from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("api/session/<int:pk>/", views.detail, name="session-detail"),
    path("api/shot/<int:pk>/", views.detail, name="shot-detail"),
    path("api/shot/", views.detail, name="shot-list"),
]

from django.contrib import admin

from sample_site.photosession.models import Order, Session, Shot


class ShotInline(admin.TabularInline):
    model = Shot
    extra = 1


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ["name", "location"]
    inlines = [ShotInline]


@admin.register(Shot)
class ShotAdmin(admin.ModelAdmin):
    list_display = ["title", "session", "rating"]
    list_editable = ["rating"]
    list_filter = ["session"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["owner", "shot", "copies"]
    list_filter = ["owner"]

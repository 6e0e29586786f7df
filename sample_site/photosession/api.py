"""The REST API the live page reads; its URLs are the models' get_api_url()."""

from rest_framework import routers, serializers, viewsets

from sample_site.photosession.models import Session, Shot


class ShotSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="get_api_url", read_only=True)
    rating_display = serializers.CharField(source="get_rating_display", read_only=True)

    class Meta:
        model = Shot
        fields = ["id", "url", "session", "title", "rating", "rating_display"]


class SessionSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="get_api_url", read_only=True)
    shots = ShotSerializer(many=True, read_only=True)

    class Meta:
        model = Session
        fields = ["id", "url", "name", "location", "shots"]


class SessionViewSet(viewsets.ModelViewSet):
    queryset = Session.objects.prefetch_related("shots")
    serializer_class = SessionSerializer


class ShotViewSet(viewsets.ModelViewSet):
    queryset = Shot.objects.all()
    serializer_class = ShotSerializer


router = routers.DefaultRouter()
router.register("session", SessionViewSet)
router.register("shot", ShotViewSet)

"""The REST API the live page reads; its URLs are the models' get_api_url()."""

from rest_framework import permissions, routers, serializers, viewsets

from sample_site.photosession.models import Order, Session, Shot


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


class OrderSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="get_api_url", read_only=True)
    owner = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Order
        fields = ["id", "url", "owner", "shot", "copies"]


class OrderViewSet(viewsets.ModelViewSet):
    """Private: a signed-in user's own orders; anyone else's is a 404.

    The list answers everyone (anonymous visitors get an empty one), so that
    subscribing to it is allowed to all and only the filtering protects orders.
    """

    serializer_class = OrderSerializer
    permission_classes = [permissions.IsAuthenticatedOrReadOnly]

    def get_queryset(self):
        user = self.request.user
        if not user.is_authenticated:
            return Order.objects.none()
        return Order.objects.filter(owner=user)

    def perform_create(self, serializer):
        serializer.save(owner=self.request.user)


router = routers.DefaultRouter()
router.register("session", SessionViewSet)
router.register("shot", ShotViewSet)
router.register("order", OrderViewSet, basename="order")

from django.apps import AppConfig

from tests.gateway.faults import CRASH_URL, FAIL_URL, Crash


class FaultsConfig(AppConfig):
    name = "tests.gateway.faults"
    label = "pushy_test_faults"

    def ready(self):
        from pushy.gateway.hub import Hub

        dispatch = Hub.dispatch

        def faulty_dispatch(hub, update):
            if update.url == FAIL_URL:
                raise RuntimeError("injected dispatch failure")
            if update.url == CRASH_URL:
                raise Crash("injected listener crash")
            return dispatch(hub, update)

        Hub.dispatch = faulty_dispatch

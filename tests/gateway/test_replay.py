"""Recovery without refetch (issue 24 item 5): a client back with the version it
last saw is sent, by a real gateway, the updates it missed from the history
beside the versions, in order and once; a gap the history does not hold, or
an update it may not be shown, is a resync as before."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pushy import publisher
from pushy.messages import Update
from tests.gateway.clients import Client, login, shot_update
from tests.testapp.models import Post

pytestmark = pytest.mark.timeout(60)

SHOT = "/api/shot/1/"
SHOTS = "/api/shot/"
POSTS = "/api/post/"


def subscribe(client: Client, url: str, version) -> int:
    answer = client.request(action="subscribe", url=url, version=version)
    assert answer["type"] == "subscribed" and answer["url"] == url, answer
    return answer["version"]


def stat(gateway, name: str) -> int:
    return gateway.get_json("/stats")[name]


def away_while(gateway, urls, *updates) -> dict[str, int]:
    """Versions held by a client that then left while ``updates`` were saved."""
    first = Client(gateway.ws_url)
    held = {url: subscribe(first, url, None) for url in urls}
    first.close()
    publisher.publish(list(updates))
    return held


def test_a_returning_client_is_sent_what_it_missed_instead_of_a_resync(gateway):
    held = away_while(
        gateway,
        [SHOT, SHOTS, "/api/shot/3/"],
        shot_update(1),
        shot_update(2, "create"),
        shot_update(1, "delete"),
    )
    again = Client(gateway.ws_url)
    answer = subscribe(again, SHOT, held[SHOT])
    missed = [again.recv(), again.recv()]
    assert [(m["type"], m["url"], m["event"]) for m in missed] == [
        ("update", SHOT, "update"),
        ("update", SHOT, "delete"),
    ]
    assert held[SHOT] < missed[0]["version"] < missed[1]["version"] <= answer
    # A collection's missed updates are its members', in order; each once to a
    # client that holds the object too (as live updates are).
    subscribe(again, SHOTS, held[SHOTS])
    assert [(m["pk"], m["event"]) for m in [again.recv()]] == [(2, "create")]
    alone = Client(gateway.ws_url)
    subscribe(alone, SHOTS, held[SHOTS])
    assert [(m["pk"], m["event"]) for m in (alone.recv() for _ in range(3))] == [
        (1, "update"),
        (2, "create"),
        (1, "delete"),
    ]
    alone.close()
    subscribe(again, "/api/shot/3/", held["/api/shot/3/"])  # unchanged
    assert again.request(action="ping") == {"type": "pong"}, "no resync, no more"
    assert stat(gateway, "replays") == 3
    assert stat(gateway, "updates_replayed") == 6
    assert stat(gateway, "version_resyncs") == 0
    # Live updates follow, once each (to a client holding both URLs: once).
    publisher.publish([shot_update(2)])
    assert (again.recv()["pk"], again.request(action="ping")) == (2, {"type": "pong"})
    again.close()


def test_missed_data_is_sent_only_where_no_visibility_could_have_changed(gateway):
    # Shots have no VISIBILITY_FIELDS: a state in the gap may have been one the
    # visitor could not see, so data is not replayed under authorization.
    held = away_while(gateway, [SHOT], shot_update(1, note="a"))
    again = Client(gateway.ws_url)
    answer = subscribe(again, SHOT, held[SHOT])
    assert again.recv() == {"type": "resync", "url": SHOT, "version": answer}
    again.close()


@pytest.mark.gateway_settings(AUTHORIZE="pushy.authorization.allow_all")
def test_missed_data_is_replayed_where_everyone_sees_everything(gateway):
    held = away_while(gateway, [SHOT], shot_update(1, note="a"))
    again = Client(gateway.ws_url)
    subscribe(again, SHOT, held[SHOT])
    assert again.recv()["data"] == {"note": "a"}
    assert again.request(action="ping") == {"type": "pong"}
    again.close()


def test_a_filtered_list_is_sent_its_collections_missed_updates_as_itself(gateway):
    listed = SHOTS + "?session=2"
    held = away_while(gateway, [listed], shot_update(4))
    again = Client(gateway.ws_url)
    subscribe(again, listed, held[listed])
    update = again.recv()
    assert (update["pk"], update["collection"]) == (4, listed)
    assert again.request(action="ping") == {"type": "pong"}
    again.close()


def test_a_gap_longer_than_the_history_is_a_resync(gateway, settings):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "HISTORY_LENGTH": 2}
    held = away_while(gateway, [SHOT], *(shot_update(1, n=n) for n in range(3)))
    again = Client(gateway.ws_url)
    answer = subscribe(again, SHOT, held[SHOT])
    assert again.recv() == {"type": "resync", "url": SHOT, "version": answer}
    assert again.request(action="ping") == {"type": "pong"}
    assert stat(gateway, "version_resyncs") == 1
    assert stat(gateway, "replays") == 0
    again.close()


@pytest.mark.gateway_settings(HISTORY_LENGTH=0)
def test_with_the_history_off_a_changed_url_is_a_resync(gateway, settings):
    held = away_while(gateway, [SHOT], shot_update(1))
    again = Client(gateway.ws_url)
    answer = subscribe(again, SHOT, held[SHOT])
    assert again.recv() == {"type": "resync", "url": SHOT, "version": answer}
    again.close()


@pytest.mark.django_db(transaction=True)
def test_missed_updates_pass_the_same_authorization_as_live_ones(gateway, open_client):
    author, bob = (User.objects.create_user(name, password="x") for name in "ab")
    shown = Post.objects.create(author=author, published=True, title="hello")
    draft = Post.objects.create(author=author, published=False, title="draft")
    cookie = login(bob)[1]
    first = open_client(gateway, cookie=cookie)
    held = subscribe(first, POSTS, None)
    first.close()
    # A create (of the draft) without data: bob may not GET it, never saw it.
    # (A create with data is a resync: its visibility before is not known.)
    publisher.publish(
        [Update(url=draft.get_api_url(), event="create", model="testapp.post",
                pk=draft.pk, collection=POSTS)]
    )  # fmt: skip
    shown.title = "v1"
    shown.save()  # its VISIBILITY_FIELDS unchanged: its data may be replayed
    again = open_client(gateway, cookie=cookie)
    held = subscribe(again, POSTS, held)
    update = again.recv()
    assert update.get("pk") == shown.pk, update
    assert again.request(action="ping") == {"type": "pong"}, "nothing of the draft"
    again.close()

    # Hidden in the gap: that update's data is the author's alone; bob resyncs.
    shown.published = False
    shown.save()
    back = open_client(gateway, cookie=cookie)
    answer = subscribe(back, POSTS, held)
    assert back.recv() == {"type": "resync", "url": POSTS, "version": answer}
    assert stat(gateway, "replays") == 1

"""Redis Cluster mode (issue 24) end to end, on the private 3 + 3 cluster
(tests/support/cluster.py): saves published by the sender into each URL's
bucket, a real gateway listening on every master, versions and control messages."""

from __future__ import annotations

import io
import json

import pytest
import redis
from django.core.management import call_command

from pushy import checks, publisher, refusals, rendering, sending, versions
from pushy import redis_cluster as mode
from pushy.channels import resync_channel, resync_request
from pushy.exceptions import PublishError
from tests.gateway.clients import Client, shot_update
from tests.support.gateway import Gateway
from tests.support.servers import free_port
from tests.testapp.models import Shot

pytestmark = [pytest.mark.timeout(90), pytest.mark.django_db(transaction=True)]

OPEN = {"AUTHORIZE": "pushy.authorization.allow_all"}


def cluster_url(cluster) -> str:
    return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in cluster.masters)


@pytest.fixture
def pushy_cluster(redis_cluster, settings):
    """pushy pointed at the cluster (the sender follows the setting)."""
    if redis_cluster.version < (7,):  # .ci/run installs Redis 7 where none is
        pytest.skip(f"Redis {redis_cluster.version} has no sharded pub/sub")
    url = cluster_url(redis_cluster)
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": url}
    assert sending.get().cluster
    yield url


@pytest.fixture
def cluster_gateway(pushy_cluster):
    with Gateway(pushy_cluster, pushy_settings=OPEN) as running:
        yield running


def shots(count: int) -> list[Shot]:
    """Shots whose URLs fall in buckets owned by every master."""
    made = [Shot.objects.create(title=f"s{i}") for i in range(count)]
    return made


def masters_of(cluster, urls: list[str]) -> set[int]:
    client = cluster.client()
    try:
        return {
            client.get_node_from_key(mode.book_key(mode.bucket(u))).port for u in urls
        }
    finally:
        client.close()


def subscribe(client: Client, url: str, version=None) -> dict:
    answer = client.request(action="subscribe", url=url, version=version)
    assert answer["type"] == "subscribed" and answer["url"] == url, answer
    return answer


def test_saves_reach_object_and_collection_subscribers_through_every_master(
    cluster_gateway, redis_cluster
):
    made = shots(8)
    urls = [f"/api/shot/{shot.pk}/" for shot in made]
    # Their buckets follow their pks (the suite's earlier tests used some):
    # more until every master owns one of them.
    while len(masters_of(redis_cluster, urls)) < 3:
        assert len(made) < 64, urls
        made += shots(1)
        urls.append(f"/api/shot/{made[-1].pk}/")
    assert cluster_gateway.get("health")[0] == 200  # every master's listener is live
    objects, collection = Client(cluster_gateway.ws_url), Client(cluster_gateway.ws_url)
    try:
        for url in urls:
            subscribe(objects, url)
        subscribe(collection, "/api/shot/")
        for shot in made:
            shot.title += "!"
            shot.save()
        heard = [objects.recv() for _ in made]
        assert [m["url"] for m in heard] == urls
        assert all(
            m["type"] == "update" and m["data"]["title"].endswith("!") for m in heard
        )
        listed = [collection.recv() for _ in made]
        assert [m["url"] for m in listed] == urls
        # Each version is in its URL's bucket's book, the collection's there too.
        store = redis_cluster.client()
        for message in heard:
            book = mode.book_key(mode.bucket(message["url"]))
            member = versions.url_member(message["url"])
            assert store.zscore(book, member) == message["version"]
            assert (
                store.zscore(book, versions.url_member("/api/shot/"))
                >= message["version"]
            )
        store.close()
    finally:
        objects.close()
        collection.close()


def away_while_changed(gateway, made, *changed) -> dict[str, int]:
    """Versions a client held of ``made`` and their collection, then left
    while ``changed`` (shots) were saved, in that order."""
    urls = [f"/api/shot/{shot.pk}/" for shot in made]
    first = Client(gateway.ws_url)
    held = {url: subscribe(first, url)["version"] for url in [*urls, "/api/shot/"]}
    first.close()
    for n, shot in enumerate(changed):
        shot.title = f"changed {n}"
        shot.save()
    return held


def test_resubscribes_with_versions_are_sent_what_they_missed(cluster_gateway):
    made = shots(6)
    held = away_while_changed(cluster_gateway, made, made[3], made[1], made[3])
    again = Client(cluster_gateway.ws_url)
    try:
        # Each changed object's own, in order; the others nothing.
        expected = {made[3].pk: ["changed 0", "changed 2"], made[1].pk: ["changed 1"]}
        for shot in made:
            url = f"/api/shot/{shot.pk}/"
            subscribe(again, url, held[url])
            titles = expected.get(shot.pk, [])
            assert [again.recv()["data"]["title"] for _ in titles] == titles
        # Sent already as the objects': the collection adds nothing.
        subscribe(again, "/api/shot/", held["/api/shot/"])
        assert again.request(action="ping") == {"type": "pong"}, "no resync"
        # The collection alone: its members, from whichever books, in order.
        alone = Client(cluster_gateway.ws_url)
        subscribe(alone, "/api/shot/", held["/api/shot/"])
        missed = [alone.recv() for _ in range(3)]
        alone.close()
        assert [m["data"]["title"] for m in missed] == [
            f"changed {n}" for n in range(3)
        ]
        assert cluster_gateway.get_json("/stats")["version_resyncs"] == 0
    finally:
        again.close()


def test_a_gap_past_the_history_is_a_resync_on_the_cluster(cluster_gateway, settings):
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "HISTORY_LENGTH": 2}
    made = shots(1)
    url = f"/api/shot/{made[0].pk}/"
    held = away_while_changed(cluster_gateway, made, *made * 3)  # one book: 3 > 2
    again = Client(cluster_gateway.ws_url)
    try:
        answer = subscribe(again, url, held[url])
        assert again.recv() == {
            "type": "resync",
            "url": url,
            "version": answer["version"],
        }
        answer = subscribe(again, "/api/shot/", held["/api/shot/"])
        assert again.recv()["type"] == "resync"
        subscribe(again, "/api/shot/", answer["version"])
        assert again.request(action="ping") == {"type": "pong"}
    finally:
        again.close()


def test_a_lost_change_resyncs_every_page_and_moves_every_books_floor(
    cluster_gateway, pushy_cluster
):
    made = shots(2)
    url = f"/api/shot/{made[0].pk}/"
    client = Client(cluster_gateway.ws_url)
    try:
        held = subscribe(client, url)["version"]
        body = resync_request(["testapp.shot"], ["test"])
        versions.lose(sending.get_client(), None, resync_channel(), body)
        assert client.recv() == {"type": "resync"}
        # Every book is in a new epoch: the held version says nothing now.
        answer = subscribe(client, url, held)
        assert client.recv() == {
            "type": "resync",
            "url": url,
            "version": answer["version"],
        }
    finally:
        client.close()


def test_pushy_explain_asks_the_gateway_on_the_cluster(cluster_gateway):
    shot = shots(1)[0]
    url = f"/api/shot/{shot.pk}/"
    client = Client(cluster_gateway.ws_url)
    try:
        subscribe(client, url)
        out = io.StringIO()
        call_command("pushy_explain", "testapp.shot", str(shot.pk), stdout=out)
    finally:
        client.close()
    lines = out.getvalue().splitlines()
    collection = mode.collection_channel(mode.bucket(url), "/api/shot/")
    assert lines[1] == f"  channel: {mode.object_channel(url)}, {collection}"
    assert "Gateway processes listening on Redis: 1" in lines
    assert any(
        line.endswith(f"subscribed to {url}: 1, /api/shot/: 0") for line in lines
    )


def test_one_masters_lost_subscription_resyncs_only_what_changed(
    cluster_gateway, redis_cluster
):
    made = shots(1)
    url = f"/api/shot/{made[0].pk}/"
    versioned, plain = Client(cluster_gateway.ws_url), Client(cluster_gateway.ws_url)
    try:
        subscribe(versioned, url, subscribe(versioned, url)["version"])
        assert plain.subscribe(url)["type"] == "subscribed"
        client = redis_cluster.client()
        node = client.get_node_from_key(mode.book_key(mode.bucket(url)))
        client.close()
        master = redis.Redis(port=node.port)
        assert master.client_kill_filter(_type="pubsub") == 1
        master.close()
        assert plain.recv() == {"type": "resync"}
        # Nothing changed: the page that sent a version is left alone.
        assert versioned.request(action="ping") == {"type": "pong"}
        made[0].title = "after"
        made[0].save()
        assert versioned.recv()["data"] == {"title": "after"}
        assert plain.recv()["data"] == {"title": "after"}
    finally:
        versioned.close()
        plain.close()


def test_the_publisher_sends_to_each_bucket_and_reads_versions_back(pushy_cluster):
    updates = [
        publisher.Update(
            url=f"/api/shot/{pk}/", event="update", model="testapp.shot", pk=pk,
            collection="/api/shot/",
        )
        for pk in range(1, 13)
    ]  # fmt: skip
    assert publisher.publish(updates) == [0] * 12  # no gateway listens
    snapshot = versions.lookup(sending.get_client(), ["/api/shot/", "/api/shot/5/"])
    assert snapshot.versions["/api/shot/"] >= snapshot.versions["/api/shot/5/"] > 0
    assert snapshot.baseline >= snapshot.versions["/api/shot/"]
    assert rendering.current_version() >= snapshot.baseline  # a page's version


def test_checks_accept_the_cluster_and_name_what_is_not_one(
    redis_cluster, redis_server
):
    assert list(checks._redis_url(cluster_url(redis_cluster))) == []
    port = redis_server.url.split(":")[2].split("/")[0]
    [error] = checks._redis_url(f"redis+cluster://127.0.0.1:{port}")
    assert error.id == "pushy.E017" and "REDIS_URL" in error.msg
    assert "not in cluster mode" in error.msg
    [error] = checks._redis_url("redis+cluster://127.0.0.1")
    assert error.id == "pushy.E007"


def test_control_channels_share_bucket_zero_slot(pushy_cluster):
    slot = redis.crc.key_slot(mode.book_key(0).encode())
    assert redis.crc.key_slot(resync_channel().encode()) == slot
    assert json.loads(resync_request(["a.b"], ["x"]))["models"] == ["a.b"]


def test_a_cluster_url_off_this_host_without_password_is_warned_of(settings):
    from pushy import deploy_checks

    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "redis+cluster://10.0.0.5:7000,10.0.0.6:7000",
    }
    [warning] = deploy_checks._redis_in_clear()
    assert warning.id == "pushy.W104" and "10.0.0.5, 10.0.0.6" in warning.msg
    settings.PUSHY_SETTINGS = {
        **settings.PUSHY_SETTINGS,
        "REDIS_URL": "rediss+cluster://:secret@10.0.0.5:7000",
    }
    assert list(deploy_checks._redis_in_clear()) == []


def test_a_book_lost_on_one_master_resyncs_what_its_pages_hold(
    cluster_gateway, redis_cluster
):
    made = shots(1)
    url = f"/api/shot/{made[0].pk}/"
    client, other = Client(cluster_gateway.ws_url), Client(cluster_gateway.ws_url)
    try:
        subscribe(client, url)
        store = redis_cluster.client()
        store.delete(mode.book_key(mode.bucket(url)))  # evicted, flushed
        store.close()
        subscribe(other, "/api/shot/")  # a lookup: that book is in a new epoch
        message = client.recv()
        assert message["type"] == "resync" and message["url"] == url
    finally:
        client.close()
        other.close()


def test_scripts_flushed_on_the_masters_are_loaded_again(pushy_cluster, redis_cluster):
    def update(pk: int) -> publisher.Update:
        return publisher.Update(
            url=f"/api/shot/{pk}/", event="update", model="testapp.shot", pk=pk,
            collection="/api/shot/",
        )  # fmt: skip

    publisher.publish([update(pk) for pk in range(1, 13)])
    for master in redis_cluster.masters:
        node = master.client()
        node.script_flush()
        node.close()
    before = versions.lookup(sending.get_client(), []).baseline
    assert publisher.publish([update(pk) for pk in range(1, 13)]) == [0] * 12
    found = versions.lookup(sending.get_client(), ["/api/shot/7/"]).versions
    assert found["/api/shot/7/"] > before  # versioned again, not plainly


def test_an_unreachable_cluster_is_redis_away_for_saves_and_gateways(settings):
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    settings.PUSHY_SETTINGS = {**settings.PUSHY_SETTINGS, "REDIS_URL": url}
    Shot.objects.create(title="saved")  # returns: its update waits, queued
    with pytest.raises(PublishError):
        publisher.publish([shot_update(1)])
    with Gateway(url, pushy_settings=OPEN) as gateway:
        assert gateway.get("health")[0] == 503
        assert "Redis Cluster at redis+cluster://127.0.0.1" in gateway.wait_for_log(
            "not reachable"
        )


def test_a_refused_save_resyncs_every_page_and_moves_every_books_floor(
    cluster_gateway, redis_cluster, monkeypatch
):
    shot = shots(1)[0]
    url = f"/api/shot/{shot.pk}/"
    client = Client(cluster_gateway.ws_url)
    store = redis_cluster.client()
    try:
        subscribe(client, url)
        books = [mode.book_key(n) for n in range(mode.BUCKETS)]
        epochs = [store.zrangebyscore(book, -1, -1) for book in books]

        def broken(self):
            raise RuntimeError("no route")

        monkeypatch.setattr(Shot, "get_api_url", broken)
        Shot.objects.create(title="lost")
        assert client.recv() == {"type": "resync"}
        assert sending.get().flush(5)  # every master has answered
        moved = [store.zrangebyscore(book, -1, -1) for book in books]
        assert all(new != old for new, old in zip(moved, epochs, strict=True))
        assert int(store.hget(refusals.stats_key(), "url_failed")) >= 1
    finally:
        store.close()
        client.close()


def test_a_master_closing_the_senders_connection_costs_no_update(
    pushy_cluster, redis_cluster
):
    updates = [shot_update(pk) for pk in range(1, 13)]
    assert publisher.publish(updates) == [0] * 12
    master = redis_cluster.masters[1].client()
    names = [c["name"] for c in master.client_list()]
    assert any(name.startswith("pushy-publisher:") for name in names)
    master.client_kill_filter(_type="normal")  # as Redis' idle timeout would
    master.close()
    before = versions.lookup(sending.get_client(), []).baseline
    assert publisher.publish(updates) == [0] * 12
    found = versions.lookup(sending.get_client(), [u.url for u in updates]).versions
    assert all(v > before for v in found.values())

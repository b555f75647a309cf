"""The key layout: one shard keeps the original names; N shards put every key a
script touches for a job in one hash slot (issue 14, Redis Cluster)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from workers.core.keys import Keys, Layout
from workers.core.records import JobState
from workers.core.settings import SettingsError, load_settings, redact_url

ONE_SHARD_NAMES = {
    "job": "durable:job:j1", "history": "durable:history:j1", "due": "durable:due",
    "leases": "durable:leases", "retrying": "durable:retrying", "parked": "durable:parked",
    "unclaimed": "durable:unclaimed", "deferred": "durable:deferred", "stuck": "durable:stuck",
    "stats": "durable:stats", "pauses": "durable:pauses", "dead": "durable:ended:dead",
    "nodes": "durable:nodes", "node_capacity": "durable:node_capacity",
    "node_fields": "durable:node_fields",
    "last_death": "durable:last_death", "policies": "durable:policies",
}  # fmt: skip


def _names(keys: Keys, fleet: Keys, job_id: str) -> dict[str, str]:
    return {
        "job": keys.job(job_id), "history": keys.history(job_id), "due": keys.due,
        "leases": keys.leases, "retrying": keys.retrying, "parked": keys.parked,
        "unclaimed": keys.unclaimed, "deferred": keys.deferred, "stuck": keys.stuck,
        "stats": keys.stats, "pauses": keys.pauses, "dead": keys.ended(JobState.DEAD),
        "nodes": fleet.nodes, "node_capacity": fleet.node_capacity,
        "node_fields": fleet.node_fields,
        "last_death": fleet.last_death, "policies": fleet.policies,
    }  # fmt: skip


def test_one_shard_keeps_every_original_key_name():
    layout = Layout("durable")
    assert _names(layout.of("j1"), layout.fleet, "j1") == ONE_SHARD_NAMES
    assert layout.of("j1") == Keys("durable") == layout.shard(0)
    assert layout.across("durable:due") == ["durable:due"]


def test_a_job_s_keys_share_one_slot_and_fleet_keys_another():
    layout = Layout("durable", 64)
    for n in range(200):
        job_id = f"job-{n}"
        keys = layout.of(job_id)
        names = _names(keys, layout.fleet, job_id)
        job_slots = {key_slot(names[k].encode()) for k in names
                     if k not in ("nodes", "node_capacity", "node_fields", "last_death",
                                  "policies")}  # fmt: skip
        assert len(job_slots) == 1, names
        assert keys.due == f"durable:{{{layout.shard_of(job_id):02d}}}:due"
    fleet = {key_slot(layout.fleet.nodes.encode()), key_slot(layout.fleet.last_death.encode()),
             key_slot(layout.fleet.node_capacity.encode()),
             key_slot(layout.fleet.node_fields.encode())}  # fmt: skip
    assert len(fleet) == 1


def test_shards_are_stable_and_used_evenly():
    layout = Layout("durable", 64)
    assert layout.shard_of("3f1c2a9e-6b1d-4c55-9e7e-2b8d0e4f1a7c") == layout.shard_of(
        "3f1c2a9e-6b1d-4c55-9e7e-2b8d0e4f1a7c"
    )
    counts = [0] * 64
    for n in range(64_000):
        counts[layout.shard_of(f"id-{n}")] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts
    assert layout.across(layout.shard(0).ended(JobState.DEAD))[5] == "durable:{05}:ended:dead"
    with pytest.raises(ValueError):
        layout.across("durable:due")  # not a shard-0 name of a sharded layout


def test_shard_setting_defaults_by_url():
    assert load_settings({}).effective_redis_shards == 1
    cluster = {"DURABLE_REDIS_URL": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
               "DURABLE_BROKER_URL": "redis://127.0.0.1:6379/0"}  # fmt: skip
    assert load_settings(cluster).effective_redis_shards == 64
    assert load_settings({**cluster, "DURABLE_REDIS_SHARDS": "128"}).effective_redis_shards == 128
    assert load_settings({"DURABLE_REDIS_SHARDS": "8"}).effective_redis_shards == 8
    with pytest.raises(SettingsError, match="at least 2"):
        load_settings({**cluster, "DURABLE_REDIS_SHARDS": "1"})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DURABLE_BROKER_URL": "redis+cluster://:pw-42@h:7000"}, "kombu has no Redis Cluster"),
        ({"DURABLE_REDIS_URL": "redis+cluster://:pw-42@h"}, "HOST:PORT"),
        ({"DURABLE_REDIS_URL": "redis+cluster://:pw-42@h:1/3"}, "only database 0"),
    ],
)  # fmt: skip
def test_cluster_urls_are_checked_and_passwords_never_shown(env, says):
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert says in str(error.value)
    assert "pw-42" not in str(error.value)


def test_a_cluster_state_url_needs_its_own_broker():
    settings = load_settings({"DURABLE_REDIS_URL": "rediss+cluster://u:pw-42@h:1,h:2"})
    with pytest.raises(SettingsError) as error:
        _ = settings.effective_broker_url
    assert "DURABLE_BROKER_URL is unset" in str(error.value)
    assert "pw-42" not in str(error.value)
    assert redact_url(settings.redis_url) == "rediss+cluster://u:***@h:1,h:2"

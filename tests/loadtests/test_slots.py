"""Releases through staging slots on the local stand-in: the release driver (tools.delivery.release) with
its local backend (loadtests.slots), on real processes. The broken versions are the app with a
defect planted in a copy of its source (loadtests.release_drill)."""

from __future__ import annotations

import pytest

from loadtests import release_drill
from loadtests.slots import LocalSlots
from tools.delivery.release import roll_out, smoke

BAKE_SECONDS = 3.0


@pytest.fixture
def slots(start_topology):
    return LocalSlots(start_topology())


def steps(rollout) -> list[tuple[str, str, bool]]:
    return [(s.region, s.name, s.ok) for s in rollout.steps]


def site_of(slots, role: str, slot: str) -> str:
    client, base, _ = slots.client(role, slot)
    with client:
        return client.get(base + slots.health_path()).headers.get("APP-SERVICE-SITE-NAME")


def settings(process) -> tuple[str, str]:
    return process.env["WEBSITE_SITE_NAME"], process.env["WEBSITE_SLOT_NAME"]


def test_a_good_version_rolls_out_region_by_region_and_serves_in_production(slots, tmp_path):
    package = release_drill.package(release_drill.ROOT / "app", tmp_path / "good.zip")
    before = {role: region.app.pid for role, region in slots.topology.regions.items()}
    rollout = roll_out(slots, package, BAKE_SECONDS, say=lambda _: None)
    assert rollout.succeeded and not rollout.rolled_back, rollout.reason
    per_region = ["deploy", "warm up", "smoke staging", "swap", "smoke production", "bake"]
    assert steps(rollout) == [(r, name, True) for r in ("secondary", "primary") for name in per_region]
    for role, region in slots.topology.regions.items():
        assert region.app.pid != before[role]  # production now runs the new release's process
        assert region.package.parent == slots.packages  # unpacked from the release package
        assert site_of(slots, role, "production") == region.site
        assert site_of(slots, role, "staging") == region.staging_site  # the old one, restarted
        assert region.staging_site == f"{region.site}-staging"
        # as App Service: the web app's name in both slots, the slot's name beside it
        assert settings(region.app) == (region.site, "production")
        assert settings(region.staging_app) == (region.site, "staging")


def test_a_version_failing_its_smoke_test_never_reaches_production(slots, tmp_path):
    package = release_drill.broken_package(tmp_path, "smoke", release_drill.FAILS_ITS_SMOKE)
    production = {role: region.app.pid for role, region in slots.topology.regions.items()}
    rollout = roll_out(slots, package, BAKE_SECONDS, say=lambda _: None)
    assert not rollout.succeeded and not rollout.rolled_back
    assert rollout.stopped_in == "secondary"
    assert steps(rollout)[-1] == ("secondary", "smoke staging", False)
    assert "PUT" in rollout.reason and "expected 200, got 500" in rollout.reason
    assert {role: r.app.pid for role, r in slots.topology.regions.items()} == production


def test_a_version_failing_after_the_swap_is_swapped_back_and_the_rollout_stops(slots, tmp_path):
    # 500s once it answered as many calls as a smoke test makes: it passes the smoke tests of
    # staging and production, then the bake's own reads get 500.
    defect = release_drill.FAILS_AFTER_ITS_SMOKE.format(calls=release_drill.SMOKE_API_CALLS)
    package = release_drill.broken_package(tmp_path, "late", defect)
    primary = slots.topology.regions["primary"].app.pid
    rollout = roll_out(slots, package, BAKE_SECONDS, say=lambda _: None)
    assert rollout.rolled_back and rollout.stopped_in == "secondary"
    assert steps(rollout)[-2:] == [("secondary", "bake", False), ("secondary", "swap back", True)]
    assert "5xx" in rollout.reason
    assert slots.topology.regions["primary"].app.pid == primary  # the other region untouched
    # production of the secondary answers again, with the version it had before
    client, base, site = slots.client("secondary", "production")
    with client:
        assert smoke(client, base, site, slots.health_path()) == []


def test_the_smoke_test_names_an_answer_from_the_wrong_slot(slots):
    client, base, _ = slots.client("primary", "production")
    with client:
        problems = smoke(client, base, "todo-api-elsewhere", slots.health_path())
    assert problems and all("not 'todo-api-elsewhere'" in line for line in problems)

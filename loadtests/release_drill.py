"""The release drill of `make demo`: three releases under load on the local stand-in, through
the release driver the workflow runs (tools.delivery.release, with loadtests.slots as its backend).

1. a good version: rolls out region by region (secondary first), 0 failed requests;
2. a version that fails its smoke test (every PUT answers 500): stopped on the first region's
   staging slot, production untouched;
3. a version that answers 500 once it has answered as many calls as a smoke test makes (so it
   passes its smoke tests and is swapped in): the bake sees the 5xx, swaps back, and the
   rollout stops.

The two broken versions are the app with a defect planted in a copy of its source
(`broken_package`), packaged by tools.delivery.package_app like any release. Figures (summary.json
`rollout`): each release's steps with their times, whether it went through or was rolled back,
the callers' failed requests during it, and how many callers' requests a broken version
answered (from the records: requests the region's production answered while it ran that
version). timeline.png marks each release's steps (loadtests.report.release_marks).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from loadtests import analysis, report
from loadtests.slots import LocalSlots
from loadtests.topology import ROOT, Topology
from tools.cli import write_atomic
from tools.delivery.package_app import build
from tools.delivery.release import SMOKE_API_CALLS, Rollout, roll_out

BAKE_SECONDS = 12.0
RELEASES = ("good", "fails its smoke", "5xx after the swap")
# Appended to a copy of app/main.py: the planted defects.
FAILS_ITS_SMOKE = """

# PLANTED DEFECT (loadtests.release_drill): every PUT answers 500.
_app_before_defect = app


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["method"] == "PUT":
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await _app_before_defect(scope, receive, send)
"""
FAILS_AFTER_ITS_SMOKE = """

# PLANTED DEFECT (loadtests.release_drill): every call but health answers 500 once this process
# has answered {calls} (as many as a smoke test makes: it passes its smoke tests, then fails).
_answered = 0
_app_before_defect = app


async def app(scope, receive, send):
    global _answered
    if scope["type"] == "http" and not scope["path"].startswith("/health"):
        _answered += 1
        if _answered > {calls}:
            await send({{"type": "http.response.start", "status": 500, "headers": []}})
            await send({{"type": "http.response.body", "body": b""}})
            return
    await _app_before_defect(scope, receive, send)
"""


def package(source: Path, out: Path) -> Path:
    """The release package of an app/ folder (tools.delivery.package_app), written to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(build(source))
    return out


def broken_package(workdir: Path, name: str, defect: str) -> Path:
    """The app with `defect` appended to a copy of app/main.py, packaged."""
    folder = workdir / "versions" / name.replace(" ", "-")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "app", folder / "app", ignore=shutil.ignore_patterns("__pycache__"))
    main = folder / "app" / "main.py"
    main.write_text(main.read_text() + defect)
    return package(folder / "app", workdir / "versions" / f"{folder.name}.zip")


def versions(workdir: Path) -> dict[str, Path]:
    return {
        "good": package(ROOT / "app", workdir / "versions" / "good.zip"),
        "fails its smoke": broken_package(workdir, "fails its smoke", FAILS_ITS_SMOKE),
        "5xx after the swap": broken_package(
            workdir, "5xx after the swap", FAILS_AFTER_ITS_SMOKE.format(calls=SMOKE_API_CALLS)
        ),
    }


class ReleaseDrill:
    """The releases, run in the background of a load run (RunSpec.background)."""

    def __init__(self, topology: Topology, say: Callable[[str], None] = print) -> None:
        self.topology = topology
        self.say = say
        self.packages = versions(topology.workdir)
        self.rollouts: dict[str, Rollout] = {}
        self.error: BaseException | None = None
        self.done = threading.Event()

    def __call__(self) -> None:
        slots = LocalSlots(self.topology)
        try:
            for name in RELEASES:
                self.say(f"  release: {name} version")
                self.rollouts[name] = roll_out(
                    slots, self.packages[name], BAKE_SECONDS, say=self.say
                )
        except BaseException as error:  # noqa: BLE001 (reported by the drill, not lost in a thread)
            self.error = error
        finally:
            self.done.set()

    def report(self, summary: dict, report_dir: Path) -> None:
        """Add the releases to the run's summary and reports (add_to_report)."""
        sites = {role: region.site for role, region in self.topology.regions.items()}
        add_to_report(summary, report_dir, self.rollouts, sites)


def add_to_report(
    summary: dict, report_dir: Path, rollouts: dict[str, Rollout], sites: dict[str, str]
) -> None:
    """The run's summary (loadtests.run.summarise, which wrote summary.json and timeline.png
    without the releases) gains `rollout` and the release verdicts; both files are written
    again, the timeline with each release's steps marked. The steps' times count from the
    run's origin, the first record's start: second 0 of summary `per_second`, the plot's x."""
    records = analysis.load_records(report_dir / "records")
    summary["rollout"] = figures(rollouts, records, records[0]["t"], sites)
    summary["breaches"] += verdicts(summary["rollout"])
    write_atomic(report_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    report.timeline_png(
        report_dir / "timeline.png", summary["per_second"], marks=[], rollouts=summary["rollout"]
    )


def figures(
    rollouts: dict[str, Rollout], records: list[dict], origin: float, sites: dict[str, str]
) -> dict:
    """summary.json's `rollout`: per release, its steps (seconds since `origin`), verdict and
    what callers saw; `sites`: each region's (role's) site name."""
    found = {}
    for name, rollout in rollouts.items():
        began, ended = rollout.steps[0].started, rollout.steps[-1].ended or time.time()
        during = [r for r in records if began <= analysis.end_time(r) < ended]
        broken = name != "good"
        found[name] = {
            **rollout.as_dict(origin),
            "failed_requests": sum(analysis.failed(r) for r in during),
            "requests": len(during),
            "broken_version_served": (
                served_by_new_version(rollout, records, sites) if broken else None
            ),
        }
    return found


def served_by_new_version(rollout: Rollout, records: list[dict], sites: dict[str, str]) -> int:
    """Callers' requests the region's production answered while it ran the released version:
    from each swap in to the swap back (or the end of the records)."""
    end = max((analysis.end_time(r) for r in records), default=0.0)
    served = 0
    for role, site in sites.items():
        swaps = [s for s in rollout.swaps(role) if s.ok]
        if not swaps:
            continue
        since = swaps[0].ended
        until = swaps[1].ended if len(swaps) > 1 else end
        served += sum(r["site"] == site and since <= analysis.end_time(r) < until for r in records)
    return served


def verdicts(figures: dict) -> list[str]:
    """The release goals, one line per one broken (empty: all held)."""
    lines = []
    good = figures.get("good")
    if good is None or not good["succeeded"] or good["failed_requests"]:
        lines.append(f"release of the good version: {_said(good)}")
    smoke = figures.get("fails its smoke")
    if smoke is None or smoke["succeeded"] or any(s["step"] == "swap" for s in smoke["steps"]):
        lines.append(f"a version failing its smoke test reached production: {_said(smoke)}")
    late = figures.get("5xx after the swap")
    if late is None or late["succeeded"] or not late["rolled_back"]:
        lines.append(f"a version answering 5xx after the swap was not swapped back: {_said(late)}")
    return lines


def _said(figures: dict | None) -> str:
    if figures is None:
        return "never ran"
    return (
        f"succeeded={figures['succeeded']}, rolled back={figures['rolled_back']}, "
        f"failed requests={figures['failed_requests']}, stopped: {figures['reason'] or '-'}"
    )

"""Chaos Studio as the rehearsal models it, shared by the fake `az rest` and the fake gateway.

An experiment's executions live in $REHEARSAL_DIR/azure.json under "chaos" (experiment name ->
executions). Their status follows the wall clock, as Azure's does without anyone asking:
PreProcessingQueued for QUEUED_SECONDS, Running until the experiment's own duration has passed
(then Success), Cancelled once cancelled, Failed when the scenario makes the start fail (the
experiment identity's missing role, as Azure reports it). While a region-outage execution runs,
the web app it targets is stopped: the gateway reads `stopped_apps`. Standard library only.
"""

from __future__ import annotations

import time

QUEUED_SECONDS = 1.0


def status(execution: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if execution.get("failed"):
        return "Failed"
    if execution.get("cancelled_at") is not None:
        return "Cancelled"
    if now < execution["started"] + QUEUED_SECONDS:
        return "PreProcessingQueued"
    if now < execution["started"] + QUEUED_SECONDS + execution["duration_seconds"]:
        return "Running"
    return "Success"


def stopped_at(execution: dict) -> float | None:
    state = status(execution)
    if state == "Cancelled":
        return execution["cancelled_at"]
    if state in ("Success", "Failed"):
        return execution["started"] + QUEUED_SECONDS + (
            0 if execution.get("failed") else execution["duration_seconds"])
    return None


def stopped_apps(azure: dict, now: float | None = None) -> set[str]:
    """The web apps a running region-outage execution holds stopped."""
    return {
        execution["stops"]
        for executions in azure.get("chaos", {}).values()
        for execution in executions
        if execution.get("stops") and status(execution, now) == "Running"
    }

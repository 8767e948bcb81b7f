"""The app's releases as GitHub Deployments: what each environment runs, and the evidence that
lets a commit into prod.

Each rollout (tools/delivery/release.py) records a deployment of the commit to its environment,
task `deploy:app`, with the package's SHA-256 in the payload, and sets its status: in_progress,
then success or failure (with the environment URL and the run's URL). GitHub shows them on the
repository's Environments page. Two questions are answered from them:

- `green_in`: did exactly this package of this commit go green in dev? Prod deploys nothing else.
- `current`: which package does the environment run now (its newest successful deployment)? A
  rollout of the same package restarts nothing.

GitHub's own deployments of jobs that name an environment have task `deploy` and no digest:
they are never mistaken for ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.delivery.github_api import GitHubApi

TASK = "deploy:app"


@dataclass(frozen=True)
class Deployment:
    id: int
    sha: str
    environment: str
    package_sha256: str
    state: str  # the newest status: success, inactive, failure, in_progress... ("" if none)
    succeeded: bool  # a status of it was success (a later deployment marks it inactive)


class Deployments:
    def __init__(self, api: GitHubApi) -> None:
        self.api = api

    def _list(self, environment: str, sha: str | None = None) -> list[Deployment]:
        """Ours in `environment`, newest first (GitHub lists deployments newest first)."""
        query = f"/deployments?environment={environment}&task={TASK}"
        if sha:
            query += f"&sha={sha}"
        found = []
        for item in self.api.list(query):
            digest = (item.get("payload") or {}).get("package_sha256")
            if item.get("task") != TASK or not isinstance(digest, str):
                continue
            statuses = self.api.list(f"/deployments/{item['id']}/statuses")
            state = statuses[0]["state"] if statuses else ""
            succeeded = any(s["state"] == "success" for s in statuses)
            found.append(Deployment(item["id"], item["sha"], environment, digest, state, succeeded))
        return found

    def green_in(self, environment: str, sha: str, package_sha256: str) -> Deployment | None:
        """The successful deployment of exactly this commit and package to `environment`."""
        return next(
            (d for d in self._list(environment, sha)
             if d.succeeded and d.package_sha256 == package_sha256),
            None,
        )

    def current(self, environment: str) -> Deployment | None:
        """The environment's newest successful deployment (what it runs, unless a later
        rollout failed after its swap and was swapped back, which leaves it running too)."""
        return next((d for d in self._list(environment) if d.state == "success"), None)

    def start(self, environment: str, sha: str, package_sha256: str, run_url: str) -> int:
        created = self.api.request("POST", "/deployments", {
            "ref": sha,
            "task": TASK,
            "environment": environment,
            "payload": {"package_sha256": package_sha256, "run_url": run_url},
            "description": f"app package sha256 {package_sha256[:12]}",
            "auto_merge": False,
            "required_contexts": [],  # the workflow ran its own checks; none are re-checked
            "production_environment": environment == "prod",
            "transient_environment": False,
        })
        self.status(created["id"], "in_progress", "rolling out", run_url)
        return created["id"]

    def status(self, deployment_id: int, state: str, description: str, run_url: str,
               environment_url: str | None = None) -> None:
        body = {"state": state, "description": description[:140], "log_url": run_url,
                "auto_inactive": state == "success"}
        if environment_url:
            body["environment_url"] = environment_url
        self.api.request("POST", f"/deployments/{deployment_id}/statuses", body)

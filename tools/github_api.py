"""A small GitHub REST client (urllib): enough to keep one comment or one issue up to date.

Reads GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL from the environment in Actions.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from tools.cli import CliError

BOT_LOGIN = "github-actions[bot]"  # the author of everything GITHUB_TOKEN writes
NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


@dataclass(frozen=True)
class GitHubApi:
    token: str
    repository: str  # "owner/name"
    api_url: str = "https://api.github.com"

    @classmethod
    def from_environment(cls) -> GitHubApi:
        missing = [n for n in ("GITHUB_TOKEN", "GITHUB_REPOSITORY") if not os.environ.get(n)]
        if missing:
            raise CliError(f"environment variable(s) not set: {', '.join(missing)}")
        return cls(
            os.environ["GITHUB_TOKEN"],
            os.environ["GITHUB_REPOSITORY"],
            os.environ.get("GITHUB_API_URL", "https://api.github.com"),
        )

    def request(self, method: str, path: str, body: dict | None = None):
        url = path if path.startswith("http") else f"{self.api_url}/repos/{self.repository}{path}"
        return self._send(method, url, body)[0]

    def list(self, path: str) -> list:
        """Every page of a list endpoint (follows the Link: rel="next" header)."""
        separator = "&" if "?" in path else "?"
        url = f"{self.api_url}/repos/{self.repository}{path}{separator}per_page=100"
        items: list = []
        while url:
            page, link = self._send("GET", url, None)
            items += page
            match = NEXT_LINK.search(link or "")
            url = match.group(1) if match else None
        return items

    def _send(self, method: str, url: str, body: dict | None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
            "User-Agent": "todo-api-delivery",
        })
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                payload = response.read()
                return (json.loads(payload) if payload else None), response.headers.get("Link")
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:200].replace("\n", " ")
            raise CliError(f"GitHub API {method} {url}: HTTP {error.code}: {detail}") from None
        except urllib.error.URLError as error:
            raise CliError(f"GitHub API {method} {url}: {error.reason}") from None


def find_marked(items: list[dict], marker: str, author: str = BOT_LOGIN) -> dict | None:
    """The first comment/issue written by `author` whose body starts with `marker`."""
    for item in items:
        if (item.get("user") or {}).get("login") == author and (item.get("body") or "").startswith(
            marker
        ):
            return item
    return None

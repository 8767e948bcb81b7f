"""A small GitHub REST client (urllib): enough to keep one comment or one issue up to date.

Reads GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_API_URL from the environment in Actions.

Retries what GitHub asks clients to retry: 5xx, 429, and 403 secondary rate limits (a
`Retry-After` header, or `x-ratelimit-remaining: 0`, or "secondary rate limit" in the message),
waiting `Retry-After` seconds when given, else the time until `x-ratelimit-reset`, else 1, 2, 4,
8 s; at most MAX_ATTEMPTS tries and MAX_WAIT_SECONDS per wait
(docs.github.com: rest/using-the-rest-api/best-practices-for-using-the-rest-api).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tools.cli import CliError

BOT_LOGIN = "github-actions[bot]"  # the author of everything GITHUB_TOKEN writes
NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')
MAX_ATTEMPTS = 5
MAX_WAIT_SECONDS = 120.0


def retry_wait(status: int, headers, body: str, attempt: int, now: float) -> float | None:
    """Seconds to wait before trying again, or None when this answer is final."""
    limited = status == 429 or (status == 403 and (
        headers.get("Retry-After") is not None
        or headers.get("x-ratelimit-remaining") == "0"
        or "secondary rate limit" in body.lower()))
    if not (limited or status >= 500) or attempt >= MAX_ATTEMPTS:
        return None
    if headers.get("Retry-After", "").isdigit():
        wait = float(headers["Retry-After"])
    elif headers.get("x-ratelimit-remaining") == "0" and headers.get(
            "x-ratelimit-reset", "").isdigit():
        wait = float(headers["x-ratelimit-reset"]) - now
    else:
        wait = 2.0 ** (attempt - 1)
    return min(max(wait, 1.0), MAX_WAIT_SECONDS)


@dataclass(frozen=True)
class GitHubApi:
    token: str
    repository: str  # "owner/name"
    api_url: str = "https://api.github.com"
    sleep: object = time.sleep  # replaced in tests

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
        attempt = 1
        while True:
            try:
                return self._send_once(method, url, body)
            except urllib.error.HTTPError as error:
                status = error.code
                detail = error.read().decode("utf-8", "replace")[:200].replace("\n", " ")
                wait = retry_wait(status, error.headers, detail, attempt, time.time())
                if wait is None:
                    raise CliError(f"GitHub API {method} {url}: HTTP {status}: {detail}"
                                   + (f" (after {attempt} attempts)" if attempt > 1 else "")
                                   ) from None
            except urllib.error.URLError as error:
                raise CliError(f"GitHub API {method} {url}: {error.reason}") from None
            print(f"GitHub API {method} {url}: HTTP {status}, retrying in {wait:.0f} s",
                  file=sys.stderr, flush=True)
            self.sleep(wait)
            attempt += 1

    def _send_once(self, method: str, url: str, body: dict | None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
            "User-Agent": "todo-api-delivery",
        })
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            return (json.loads(payload) if payload else None), response.headers.get("Link")


def find_marked(items: list[dict], marker: str, author: str = BOT_LOGIN) -> dict | None:
    """The first comment/issue written by `author` whose body starts with `marker`."""
    for item in items:
        if (item.get("user") or {}).get("login") == author and (item.get("body") or "").startswith(
            marker
        ):
            return item
    return None

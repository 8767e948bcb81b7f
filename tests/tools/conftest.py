"""A fake GitHub REST API on 127.0.0.1 (real HTTP, in a thread) for the comment/issue tools."""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from tools.delivery.github_api import GitHubApi

REPO = "contoso/todo-api"
PAGE_SIZE = 2  # small pages, so the client must follow Link headers


class FakeGitHub:
    def __init__(self):
        self.comments: dict[int, list[dict]] = {}  # pr -> comments
        self.issues: list[dict] = []
        self.labels: dict[int, list[str]] = {}  # issue or pr -> label names
        self.calls: list[tuple[str, str]] = []  # (method, path) of writes
        self.next_id = 1000
        # answers to give before any real one: (status, headers, message)
        self.failures: list[tuple[int, dict, str]] = []
        self.attempts = 0
        self.waits: list[float] = []  # what the client slept (tests never sleep)
        self.deployments: list[dict] = []  # newest last; each with its "statuses", newest last

    def deployment_statuses(self, environment: str) -> list[tuple[str, str, list[str]]]:
        """(sha, package digest, states oldest first) of each deployment to `environment`."""
        return [(d["sha"], (d.get("payload") or {}).get("package_sha256"),
                 [s["state"] for s in d["statuses"]])
                for d in self.deployments if d["environment"] == environment]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def make_handler(state: FakeGitHub, base: list[str]):
    prefix = f"/repos/{REPO}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def injected_failure(self) -> bool:
            state.attempts += 1
            if not state.failures:
                return False
            status, headers, message = state.failures.pop(0)
            data = json.dumps({"message": message}).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True

        def reply(self, status: int, body, link: str | None = None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if link:
                self.send_header("Link", link)
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> dict:
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def page(self, items: list, url) -> None:
            query = parse_qs(url.query)
            page = int(query.get("page", ["1"])[0])
            chunk = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            more = page * PAGE_SIZE < len(items)
            link = None
            if more:
                query["page"] = [str(page + 1)]
                rest = "&".join(f"{k}={v[0]}" for k, v in query.items())
                link = f'<{base[0]}{url.path}?{rest}>; rel="next"'
            self.reply(200, chunk, link)

        def do_GET(self):
            if self.injected_failure():
                return None
            if self.headers.get("Authorization") != "Bearer test-token":
                return self.reply(401, {"message": "Bad credentials"})
            url = urlparse(self.path)
            path = url.path.removeprefix(prefix)
            if match := re.fullmatch(r"/issues/(\d+)/comments", path):
                return self.page(state.comments.get(int(match[1]), []), url)
            if match := re.fullmatch(r"/issues/(\d+)/labels", path):
                return self.page([{"name": n} for n in state.labels.get(int(match[1]), [])], url)
            if path == "/deployments":
                query = {k: v[0] for k, v in parse_qs(url.query).items() if k != "page"}
                found = [{k: v for k, v in d.items() if k != "statuses"}
                         for d in reversed(state.deployments)
                         if all(str(d.get(k)) == v for k, v in query.items() if k != "per_page")]
                return self.page(found, url)
            if match := re.fullmatch(r"/deployments/(\d+)/statuses", path):
                [found] = [d for d in state.deployments if d["id"] == int(match[1])]
                return self.page(list(reversed(found["statuses"])), url)
            if path == "/issues":
                query = parse_qs(url.query)
                label = query.get("labels", [None])[0]
                found = [i for i in state.issues if i["state"] == query["state"][0]
                         and (label is None or label in i["labels"])]
                return self.page(found, url)
            return self.reply(404, {"message": "Not Found"})

        def do_POST(self):
            if self.injected_failure():
                self.rfile.read(int(self.headers["Content-Length"]))
                return None
            path = urlparse(self.path).path.removeprefix(prefix)
            body = self.body()
            state.calls.append(("POST", path))
            if match := re.fullmatch(r"/issues/(\d+)/comments", path):
                comment = {"id": state.new_id(), "body": body["body"],
                           "user": {"login": "github-actions[bot]"}}
                state.comments.setdefault(int(match[1]), []).append(comment)
                return self.reply(201, comment)
            if match := re.fullmatch(r"/issues/(\d+)/labels", path):
                labels = state.labels.setdefault(int(match[1]), [])
                labels += [n for n in body["labels"] if n not in labels]
                return self.reply(200, [{"name": n} for n in labels])
            if path == "/deployments":
                deployment = {"id": state.new_id(), "sha": body["ref"], "ref": body["ref"],
                              "task": body.get("task", "deploy"),
                              "environment": body["environment"],
                              "payload": body.get("payload") or {}, "statuses": []}
                state.deployments.append(deployment)
                return self.reply(201, {k: v for k, v in deployment.items() if k != "statuses"})
            if match := re.fullmatch(r"/deployments/(\d+)/statuses", path):
                [found] = [d for d in state.deployments if d["id"] == int(match[1])]
                if body["state"] == "success" and body.get("auto_inactive", True):
                    # GitHub: earlier successful deployments of the environment become inactive
                    for other in state.deployments:
                        if (other is not found and other["environment"] == found["environment"]
                                and other["statuses"]
                                and other["statuses"][-1]["state"] == "success"):
                            other["statuses"].append({"state": "inactive"})
                found["statuses"].append(body)
                return self.reply(201, body)
            if path == "/issues":
                issue = {"number": state.new_id(), "title": body["title"], "body": body["body"],
                         "labels": body.get("labels", []), "state": "open",
                         "user": {"login": "github-actions[bot]"}}
                state.issues.append(issue)
                return self.reply(201, issue)
            return self.reply(404, {"message": "Not Found"})

        def do_DELETE(self):
            path = unquote(urlparse(self.path).path.removeprefix(prefix))
            state.calls.append(("DELETE", path))
            if match := re.fullmatch(r"/issues/(\d+)/labels/(.+)", path):
                labels = state.labels.get(int(match[1]), [])
                if match[2] in labels:
                    labels.remove(match[2])
                    return self.reply(200, [{"name": n} for n in labels])
            return self.reply(404, {"message": "Label does not exist"})

        def do_PATCH(self):
            path = urlparse(self.path).path.removeprefix(prefix)
            body = self.body()
            state.calls.append(("PATCH", path))
            if match := re.fullmatch(r"/issues/comments/(\d+)", path):
                for comments in state.comments.values():
                    for comment in comments:
                        if comment["id"] == int(match[1]):
                            comment.update(body)
                            return self.reply(200, comment)
            if match := re.fullmatch(r"/issues/(\d+)", path):
                for issue in state.issues:
                    if issue["number"] == int(match[1]):
                        issue.update(body)
                        return self.reply(200, issue)
            return self.reply(404, {"message": "Not Found"})

    return Handler


@contextmanager
def serving(state: FakeGitHub):
    """The fake API for `state` on 127.0.0.1, in a thread; yields its base URL."""
    base = [""]
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state, base))
    base[0] = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield base[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def github():
    """(state, api client pointed at the fake server)."""
    state = FakeGitHub()
    with serving(state) as url:
        yield state, GitHubApi("test-token", REPO, url, sleep=state.waits.append)

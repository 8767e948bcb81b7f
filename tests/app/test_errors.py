"""Errors are RFC 9457 problem+json without tracebacks; every response names the site."""

from __future__ import annotations

import pytest

from app.contract import MAX_BODY_BYTES, MAX_NAME_LENGTH
from app.store import InMemoryTodoStore

PROBLEM_FIELDS = {"type", "title", "status", "detail"}


class BrokenStore(InMemoryTodoStore):
    """A store whose listing fails unexpectedly (stands in for a backend outage)."""

    async def list(self):
        raise RuntimeError("secret internal detail")


@pytest.fixture
def broken(make_client, settings, cert_header):
    return make_client(settings, cert_header, store=BrokenStore())


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == PROBLEM_FIELDS
    assert body["status"] == status and body["type"] == "about:blank"
    return body


def test_400_is_a_problem(client):
    assert_problem(client.post("/api/TodoItem", json={"name": ""}), 400)


def test_404_is_a_problem(client):
    assert_problem(client.get("/api/TodoItem/" + "0" * 32), 404)


def test_unknown_route_404_is_a_problem(client):
    assert_problem(client.get("/nowhere"), 404)


def test_405_is_a_problem(client):
    assert_problem(client.patch("/api/TodoItem"), 405)


def test_unexpected_error_is_a_500_problem_without_traceback(broken):
    response = broken.get("/api/TodoItem")
    body = assert_problem(response, 500)
    assert "Traceback" not in response.text
    assert "secret internal detail" not in response.text
    assert "RuntimeError" not in body["detail"]


def test_500_carries_the_site_name(broken, settings):
    assert broken.get("/api/TodoItem").headers["app-service-site-name"] == settings.site_name


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/api/TodoItem", {}),
        ("POST", "/api/TodoItem", {"json": {"name": "x"}}),
        ("GET", "/api/TodoItem/" + "0" * 32, {}),
        ("POST", "/api/TodoItem", {"content": b"x" * (MAX_BODY_BYTES + 1)}),
        ("PATCH", "/api/TodoItem", {}),
        ("GET", "/swagger/v1/swagger.json", {}),
    ],
)
def test_every_response_carries_the_site_name(client, settings, method, path, kwargs):
    response = client.request(method, path, **kwargs)
    assert response.headers["app-service-site-name"] == settings.site_name


def test_403_carries_the_site_name(anonymous, settings):
    response = anonymous.get("/api/TodoItem")
    assert response.status_code == 403
    assert response.headers["app-service-site-name"] == settings.site_name


def test_site_name_defaults_to_localhost(make_client, environment, cert_header):
    from app.settings import load_settings

    without = {k: v for k, v in environment.items() if k != "WEBSITE_SITE_NAME"}
    client = make_client(load_settings(without), cert_header)
    assert client.get("/api/TodoItem").headers["app-service-site-name"] == "localhost"


def test_a_staging_slot_answers_with_the_slot_in_its_site_name(make_client, environment, cert_header):
    from app.settings import load_settings

    # App Service: the app's name in every slot, and the slot's name beside it.
    staging = load_settings({**environment, "WEBSITE_SLOT_NAME": "Staging"})
    client = make_client(staging, cert_header)
    site = environment["WEBSITE_SITE_NAME"]
    assert client.get("/api/TodoItem").headers["app-service-site-name"] == f"{site}-staging"


# Limits: body size (413), content type (415), name length (400); a rejection changes nothing.


def test_body_over_the_limit_is_413(client):
    name = "x" * MAX_BODY_BYTES
    response = client.post("/api/TodoItem", json={"name": name})
    assert_problem(response, 413)


def test_body_over_the_limit_without_content_length_is_413(client):
    def chunks():
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = client.post(
        "/api/TodoItem", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_body_at_the_limit_is_accepted(client):
    body = b'{"name": "x"}'
    padded = body[:-1] + b" " * (MAX_BODY_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    response = client.post(
        "/api/TodoItem", content=padded, headers={"content-type": "application/json"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/xml", "application/jsonx"]
)
def test_body_that_is_not_json_media_type_is_415(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/api/TodoItem", content=b'{"name": "x"}', headers=headers)
    assert_problem(response, 415)


def test_json_media_type_with_charset_is_accepted(client):
    response = client.post(
        "/api/TodoItem",
        content=b'{"name": "x"}',
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 201


def test_name_at_the_length_limit_is_accepted(client):
    response = client.post("/api/TodoItem", json={"name": "n" * MAX_NAME_LENGTH})
    assert response.status_code == 201


def test_name_over_the_length_limit_is_400(client):
    assert_problem(client.post("/api/TodoItem", json={"name": "n" * (MAX_NAME_LENGTH + 1)}), 400)


def test_put_with_a_name_over_the_limit_is_400(client):
    item = client.post("/api/TodoItem", json={"name": "x"}).json()
    update = {"id": item["id"], "name": "n" * (MAX_NAME_LENGTH + 1)}
    assert_problem(client.put(f"/api/TodoItem/{item['id']}", json=update), 400)


UNKNOWN = "0" * 32
TOO_LONG = "n" * (MAX_NAME_LENGTH + 1)
TOO_BIG = "x" * MAX_BODY_BYTES
TEXT = {"content": b'{"name": "x"}', "headers": {"content-type": "text/plain"}}

# Each entry: item id -> (method, path, request arguments), all of them rejected with a 4xx.
REJECTED_WRITES = {
    "post blank name": lambda i: ("POST", "/api/TodoItem", {"json": {"name": " "}}),
    "post long name": lambda i: ("POST", "/api/TodoItem", {"json": {"name": TOO_LONG}}),
    "post text/plain": lambda i: ("POST", "/api/TodoItem", TEXT),
    "post too big": lambda i: ("POST", "/api/TodoItem", {"json": {"name": TOO_BIG}}),
    "put other id": lambda i: ("PUT", f"/api/TodoItem/{i}", {"json": {"id": UNKNOWN, "name": "y"}}),
    "put bad flag": lambda i: (
        "PUT",
        f"/api/TodoItem/{i}",
        {"json": {"id": i, "name": "y", "isCompleted": "yes"}},
    ),
    "put too big": lambda i: ("PUT", f"/api/TodoItem/{i}", {"json": {"id": i, "name": TOO_BIG}}),
    "put text/plain": lambda i: ("PUT", f"/api/TodoItem/{i}", TEXT),
    "delete unknown": lambda i: ("DELETE", f"/api/TodoItem/{UNKNOWN}", {}),
}


@pytest.mark.parametrize("write", REJECTED_WRITES.values(), ids=REJECTED_WRITES.keys())
def test_a_rejected_request_changes_nothing(client, write):
    item = client.post("/api/TodoItem", json={"name": "original"}).json()
    before = client.get("/api/TodoItem").json()
    method, path, kwargs = write(item["id"])
    response = client.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500
    assert client.get("/api/TodoItem").json() == before


def test_a_request_without_certificate_changes_nothing(client):
    client.post("/api/TodoItem", json={"name": "original"})
    before = client.get("/api/TodoItem").json()
    item_path = f"/api/TodoItem/{before[0]['id']}"
    without = {"X-ARR-ClientCert": ""}  # the same app, the certificate header emptied
    assert client.post("/api/TodoItem", json={"name": "sneaky"}, headers=without).status_code == 403
    assert client.delete(item_path, headers=without).status_code == 403
    update = {"id": before[0]["id"], "name": "sneaky"}
    assert client.put(item_path, json=update, headers=without).status_code == 403
    assert client.get("/api/TodoItem").json() == before

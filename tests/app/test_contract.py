"""The TodoItem contract (the source's TodoItemController), one row per test."""

from __future__ import annotations

import re

import pytest

ITEM_ID = re.compile(r"[0-9a-f]{32}")
UNKNOWN_ID = "0" * 32


def create(client, name="walk the dog", completed=False) -> dict:
    response = client.post("/api/TodoItem", json={"name": name, "isCompleted": completed})
    assert response.status_code == 201
    return response.json()


def test_list_starts_empty(client):
    response = client.get("/api/TodoItem")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == []


def test_list_returns_every_created_item(client):
    created = [create(client, f"item {n}") for n in range(3)]
    assert client.get("/api/TodoItem").json() == created


def test_post_returns_201_with_the_item_and_its_location(client):
    response = client.post("/api/TodoItem", json={"name": "buy milk", "isCompleted": True})
    assert response.status_code == 201
    item = response.json()
    assert ITEM_ID.fullmatch(item["id"])
    assert item == {"id": item["id"], "name": "buy milk", "isCompleted": True}
    assert response.headers["location"] == f"/api/TodoItem/{item['id']}"


def test_post_ignores_an_id_in_the_body(client):
    item = client.post("/api/TodoItem", json={"id": "mine", "name": "x"}).json()
    assert item["id"] != "mine" and ITEM_ID.fullmatch(item["id"])


def test_post_defaults_is_completed_to_false(client):
    assert client.post("/api/TodoItem", json={"name": "x"}).json()["isCompleted"] is False


def test_get_returns_the_item(client):
    item = create(client)
    response = client.get(f"/api/TodoItem/{item['id']}")
    assert response.status_code == 200
    assert response.json() == item


def test_get_unknown_id_is_404(client):
    assert client.get(f"/api/TodoItem/{UNKNOWN_ID}").status_code == 404


def test_put_replaces_the_item(client):
    item = create(client)
    update = {"id": item["id"], "name": "renamed", "isCompleted": True}
    response = client.put(f"/api/TodoItem/{item['id']}", json=update)
    assert response.status_code == 200
    assert response.json() == update
    assert client.get(f"/api/TodoItem/{item['id']}").json() == update


def test_put_with_a_different_body_id_is_400(client):
    item = create(client)
    response = client.put(f"/api/TodoItem/{item['id']}", json={"id": UNKNOWN_ID, "name": "x"})
    assert response.status_code == 400


def test_put_without_a_body_id_is_400(client):
    item = create(client)
    assert client.put(f"/api/TodoItem/{item['id']}", json={"name": "x"}).status_code == 400


def test_put_with_a_blank_name_is_400(client):
    item = create(client)
    response = client.put(f"/api/TodoItem/{item['id']}", json={"id": item["id"], "name": "  "})
    assert response.status_code == 400


def test_put_unknown_id_is_404(client):
    response = client.put(f"/api/TodoItem/{UNKNOWN_ID}", json={"id": UNKNOWN_ID, "name": "x"})
    assert response.status_code == 404


def test_delete_returns_204_and_removes_the_item(client):
    item = create(client)
    response = client.delete(f"/api/TodoItem/{item['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/TodoItem/{item['id']}").status_code == 404


def test_delete_unknown_id_is_404(client):
    assert client.delete(f"/api/TodoItem/{UNKNOWN_ID}").status_code == 404


@pytest.mark.parametrize("path", ["/api/todoitem", "/API/TODOITEM", "/Api/TodoItem"])
def test_routes_match_in_any_case(client, path):
    item = create(client)
    assert client.get(path).json() == [item]
    assert client.get(f"{path}/{item['id']}").json() == item


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (None, "missing"),
        (b"[]", "not an object"),
        (b'"name"', "not an object"),
        (b"{not json", "not JSON"),
        (b'{"name": NaN}', "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{}", "name missing"),
        (b'{"name": ""}', "name empty"),
        (b'{"name": " \\t\\n"}', "name blank"),
        (b'{"name": 5}', "name not a string"),
        (b'{"name": null}', "name null"),
        (b'{"name": "x", "isCompleted": "true"}', "isCompleted not a bool"),
        (b'{"name": "x", "isCompleted": 1}', "isCompleted a number"),
        (b'{"name": "x", "isCompleted": null}', "isCompleted null"),
        (b'{"name": "x", "id": 7}', "id not a string"),
    ],
)
def test_post_with_a_bad_body_is_400(client, body, why):
    response = client.post(
        "/api/TodoItem", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, why


def test_unknown_path_is_404_problem(client):
    response = client.get("/api/Other")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_trailing_slash_is_not_redirected(client):
    assert client.get("/api/TodoItem/", follow_redirects=False).status_code == 404


def test_unsupported_method_is_405_problem_with_allow(client):
    response = client.patch("/api/TodoItem")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_item_path_allows_get_put_delete(client):
    response = client.post(f"/api/TodoItem/{UNKNOWN_ID}", json={"name": "x"})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}

"""Plan comments are updated in place (found by marker), never duplicated."""

import pytest

from tools.cli import CliError
from tools.delivery.github_api import GitHubApi, find_marked
from tools.delivery.pr_comment import marker_of, upsert_comment

MARKER = "<!-- todo-api-plan:todo-api-dev -->"


def comment(id_, body, login="github-actions[bot]"):
    return {"id": id_, "body": body, "user": {"login": login}}


def test_find_marked_picks_the_bot_comment_with_the_marker():
    comments = [comment(1, "LGTM", "alice"), comment(2, MARKER + "\nold plan")]
    assert find_marked(comments, MARKER)["id"] == 2


def test_find_marked_ignores_a_human_comment_quoting_the_marker():
    assert find_marked([comment(1, MARKER + "\nfake", "mallory")], MARKER) is None


def test_find_marked_ignores_the_marker_of_another_stack():
    other = comment(1, "<!-- todo-api-plan:todo-api-prod -->\nplan")
    assert find_marked([other], MARKER) is None


def test_body_without_marker_line_is_rejected():
    with pytest.raises(CliError, match="must start with a hidden marker"):
        marker_of("### plan\n")


def test_first_run_creates_the_comment(github):
    state, api = github
    assert upsert_comment(api, 7, MARKER + "\nplan 1")[0] == "created"
    assert [c["body"] for c in state.comments[7]] == [MARKER + "\nplan 1"]


def test_next_push_updates_the_same_comment_in_place(github):
    state, api = github
    _, first = upsert_comment(api, 7, MARKER + "\nplan 1")
    action, second = upsert_comment(api, 7, MARKER + "\nplan 2")
    assert (action, second) == ("updated", first)
    assert [c["body"] for c in state.comments[7]] == [MARKER + "\nplan 2"]


def test_marked_comment_is_found_beyond_the_first_page(github):
    state, api = github
    state.comments[7] = [comment(i, f"chat {i}", "alice") for i in range(1, 6)]
    state.comments[7].append(comment(99, MARKER + "\nold"))
    assert upsert_comment(api, 7, MARKER + "\nnew") == ("updated", 99)


def test_each_stack_gets_its_own_comment(github):
    state, api = github
    upsert_comment(api, 7, MARKER + "\ndev")
    upsert_comment(api, 7, "<!-- todo-api-plan:todo-api-prod -->\nprod")
    assert len(state.comments[7]) == 2


def test_api_error_is_one_line_naming_the_status(github):
    _, api = github
    bad = GitHubApi("wrong-token", api.repository, api.api_url)
    with pytest.raises(CliError, match=r"HTTP 401: .*Bad credentials"):
        upsert_comment(bad, 7, MARKER + "\nplan")


def test_a_server_error_is_retried_with_backoff(github):
    state, api = github
    state.failures = [(502, {}, "Bad Gateway"), (503, {}, "unavailable")]
    assert upsert_comment(api, 7, MARKER + "\nplan")[0] == "created"
    assert state.waits == [1.0, 2.0] and len(state.comments[7]) == 1


def test_a_secondary_rate_limit_waits_retry_after(github):
    state, api = github
    state.failures = [(403, {"Retry-After": "7"}, "You have exceeded a secondary rate limit")]
    assert upsert_comment(api, 7, MARKER + "\nplan")[0] == "created"
    assert state.waits == [7.0]


def test_a_plain_403_is_not_retried(github):
    state, api = github
    state.failures = [(403, {}, "Resource not accessible by integration")]
    with pytest.raises(CliError, match="HTTP 403: .*Resource not accessible"):
        upsert_comment(api, 7, MARKER + "\nplan")
    assert state.waits == []


def test_retries_give_up_after_five_attempts(github):
    state, api = github
    state.failures = [(500, {}, "boom")] * 6
    with pytest.raises(CliError, match=r"HTTP 500: .*boom.* \(after 5 attempts\)"):
        upsert_comment(api, 7, MARKER + "\nplan")
    assert state.waits == [1.0, 2.0, 4.0, 8.0] and state.attempts == 5


def test_the_plan_label_replaces_the_stacks_previous_one_and_keeps_others(github):
    from tools.delivery.pr_comment import sync_label

    state, api = github
    state.labels[7] = ["plan/todo-api-dev: no changes", "plan/todo-api-prod: changes", "bug"]
    assert sync_label(api, 7, "plan/todo-api-dev: destroys") == (
        ["plan/todo-api-dev: destroys"], ["plan/todo-api-dev: no changes"])
    assert sorted(state.labels[7]) == [
        "bug", "plan/todo-api-dev: destroys", "plan/todo-api-prod: changes"]
    assert sync_label(api, 7, "plan/todo-api-dev: destroys") == ([], [])  # already right


def test_a_label_that_is_not_a_plan_label_is_refused(github):
    from tools.delivery.pr_comment import sync_label

    _, api = github
    with pytest.raises(CliError, match="label must look like"):
        sync_label(api, 7, "bug")

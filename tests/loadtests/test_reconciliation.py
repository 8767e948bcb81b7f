"""Reconciliation of the records against the store's items (pure; made-up records and items)."""

from __future__ import annotations

import pytest

from loadtests.reconciliation import (
    DEFECTS,
    EXAMPLES,
    ReconciliationError,
    StoredItem,
    reconcile,
)
from tests.loadtests.records import A, B, C, content, create, delete, request, stored, update


def defects(result) -> dict:
    return {name: result[name] for name in DEFECTS if result[name]}


def test_a_store_that_matches_the_records_has_no_defect():
    records = [
        create(1.0, A, "id-a"),
        update(2.0, "id-a", A, "v1"),
        create(3.0, B, "id-b"),
        delete(4.0, "id-b", B),
        create(30.0, C, "id-c"),  # after the fault: counted like the others
    ]
    result = reconcile(records, [stored("id-a", A, "v1", True), stored("id-c", C)])
    assert defects(result) == {}
    assert (result["acknowledged"], result["acknowledged_deleted"]) == (3, 1)
    assert (result["expected_in_store"], result["in_store"]) == (2, 2)
    assert result["examples"] == {}


def test_acknowledged_items_absent_from_the_store_are_missing_whenever_they_were_made():
    # before (1 s), during (15 s) and after (30 s) a fault at 10 s, restored at 20 s
    records = [create(1.0, A, "id-a"), create(15.0, B, "id-b"), create(30.0, C, "id-c")]
    result = reconcile(records, [stored("id-b", B)])
    assert defects(result) == {"missing": 2}
    assert result["examples"]["missing"] == [
        {"id": "id-a", "token": A},
        {"id": "id-c", "token": C},
    ]


def test_a_second_item_for_one_create_is_a_duplicate():
    """The gateway re-sent a POST: the client got one 201, the store holds two items."""
    result = reconcile([create(1.0, A, "id-a")], [stored("id-a", A), stored("id-resent", A)])
    assert defects(result) == {"duplicates": 1}
    assert result["examples"]["duplicates"] == [{"id": "id-resent", "token": A}]


def test_items_no_client_created_are_orphans():
    items = [
        stored("id-a", A),
        stored("id-x", "f" * 32),  # a token nobody sent
        StoredItem("id-y", "no token here", False),
    ]
    result = reconcile([create(1.0, A, "id-a")], items)
    assert defects(result) == {"orphans": 2}
    assert {entry["id"] for entry in result["examples"]["orphans"]} == {"id-x", "id-y"}


def test_content_other_than_the_last_acknowledged_is_stale():
    records = [
        create(1.0, A, "id-a"),
        update(2.0, "id-a", A, "v1", done=True),
        update(3.0, "id-a", A, "v2", done=False),
    ]
    result = reconcile(records, [stored("id-a", A, "v1", True)])
    assert defects(result) == {"stale_content": 1}
    [entry] = result["examples"]["stale_content"]
    assert entry["expected"] == content(A, "v2", False)
    assert entry["found"] == content(A, "v1", True)


def test_a_delete_answered_404_is_no_proof_that_the_item_survived():
    records = [create(1.0, A, "id-a"), delete(12.0, "id-a", A, status=404)]
    assert defects(reconcile(records, [])) == {"missing": 1}
    assert defects(reconcile(records, [stored("id-a", A)])) == {}  # there after all


def test_a_create_without_an_answer_whose_item_exists_is_not_an_error():
    records = [create(1.0, A, "id-a"), create(12.0, B, status=504), create(13.0, C, status=0)]
    result = reconcile(records, [stored("id-a", A), stored("id-b", B)])
    assert defects(result) == {}
    assert result["unacknowledged_present"] == 1
    assert result["examples"]["unacknowledged_present"] == [{"id": "id-b", "token": B}]


def test_two_items_for_one_unanswered_create_are_one_present_and_one_duplicate():
    result = reconcile([create(12.0, B, status=504)], [stored("id-1", B), stored("id-2", B)])
    assert defects(result) == {"duplicates": 1}
    assert result["unacknowledged_present"] == 1


def test_an_update_without_an_answer_may_have_been_applied_a_refused_one_not():
    unanswered = [create(1.0, A, "id-a"), update(12.0, "id-a", A, "v1", status=503)]
    result = reconcile(unanswered, [stored("id-a", A, "v1", True)])
    assert defects(result) == {}
    assert result["unacknowledged_update_applied"] == 1
    refused = [create(1.0, A, "id-a"), update(12.0, "id-a", A, "v1", status=409)]
    assert defects(reconcile(refused, [stored("id-a", A, "v1", True)])) == {"stale_content": 1}


def test_an_unanswered_update_before_the_last_acknowledged_one_is_stale_if_it_wins():
    """A late write: the store holds what a PUT sent before the acknowledged one."""
    records = [
        create(1.0, A, "id-a"),
        update(2.0, "id-a", A, "v1", status=504),
        update(3.0, "id-a", A, "v2"),
    ]
    assert defects(reconcile(records, [stored("id-a", A, "v1", True)])) == {"stale_content": 1}


def test_a_delete_without_an_answer_may_have_been_applied():
    records = [
        create(1.0, A, "id-a"),
        delete(12.0, "id-a", A, status=503),
        delete(13.0, "id-a", A, status=404),  # the user's retry: gone already
    ]
    result = reconcile(records, [])
    assert defects(result) == {}
    assert result["unacknowledged_delete_applied"] == 1


def test_a_deleted_item_still_in_the_store_is_resurrected():
    records = [create(1.0, A, "id-a"), delete(2.0, "id-a", A)]
    assert defects(reconcile(records, [stored("id-a", A)])) == {"resurrected": 1}


def test_items_held_before_the_run_must_stay_unchanged_and_are_no_orphans():
    before = [stored("old-1", A), stored("old-2", B), StoredItem("old-3", "made by hand", True)]
    after = [stored("old-1", A), stored("old-2", B, "changed"), before[2]]
    result = reconcile([], after, baseline=before)
    assert defects(result) == {"stale_content": 1}
    assert result["examples"]["stale_content"][0]["preexisting"] is True
    gone = reconcile([], after[1:], baseline=before)
    assert gone["missing"] == 1 and gone["examples"]["missing"][0]["id"] == "old-1"
    assert result["preexisting"] == 3


def test_404s_on_own_items_are_counted_as_the_clients_saw_them():
    records = [
        create(1.0, A, "id-a"),
        request(12.0, "GET", 404, "id-a", A, outcome="lost"),
    ]
    result = reconcile(records, [stored("id-a", A)])
    assert result["not_found_responses"] == 1 and defects(result) == {}


def test_examples_list_the_first_few_of_each_figure():
    tokens = [format(n, "032x") for n in range(EXAMPLES + 3)]
    records = [create(float(n), token, f"id-{n}") for n, token in enumerate(tokens)]
    result = reconcile(records, [])
    assert result["missing"] == EXAMPLES + 3
    assert len(result["examples"]["missing"]) == EXAMPLES


@pytest.mark.parametrize("drop", ["token", "content"])
def test_records_without_item_identity_are_a_one_line_error(drop):
    record = create(1.0, A, "id-a")
    del record[drop]
    with pytest.raises(ReconciliationError, match=f"has no {drop}") as caught:
        reconcile([record], [])
    assert "\n" not in str(caught.value)


def test_a_201_recorded_without_its_item_is_an_error_not_an_unanswered_create():
    """A recording defect (the create's answer not written into its record) must not pass as
    'creates without an answer': found when the Locust user recorded into its own copy of the
    request context."""
    from loadtests.reconciliation import ReconciliationError, reconcile

    record = {"t": 1.0, "method": "POST", "status": 201, "item": None, "token": "a" * 32,
              "content": {"name": "lt:" + "a" * 32 + " x", "isCompleted": False}}
    with pytest.raises(ReconciliationError, match="no item id"):
        reconcile([record], [], [], read_from="test")


def retried(t, token, status=409):
    """An answer after which the user sent the same keyed create again."""
    record = create(t, token, status=status)
    return {**record, "outcome": "retried", "retry_after": True}


def replay(t, token, item):
    return {**create(t, token, item), "deliberate_replay": True}


def test_a_create_sent_again_after_409_or_503_counts_once_with_its_one_item():
    records = [retried(1.0, A), retried(2.0, A, 503), create(3.0, A, "id-a"),
               retried(4.0, B, 503), create(5.0, B, "id-b"), delete(6.0, "id-b", B)]
    result = reconcile(records, [stored("id-a", A)])
    assert defects(result) == {}
    assert (result["retried_creates"], result["retried_creates_single"]) == (2, 1)
    assert result["retried_creates_not_single"] == 0  # id-b was deleted with 204: none expected


def test_a_retried_create_stored_twice_is_not_single():
    records = [retried(1.0, A, 503), create(2.0, A, "id-a")]
    result = reconcile(records, [stored("id-a", A), stored("id-copy", A)])
    assert result["retried_creates_not_single"] == 1
    assert defects(result) == {"duplicates": 1}


def test_a_deliberate_replay_answered_with_its_creates_item_is_no_defect():
    records = [create(1.0, A, "id-a"), replay(9.0, A, "id-a")]
    result = reconcile(records, [stored("id-a", A)])
    assert defects(result) == {}
    assert (result["deliberate_replays"], result["replays_same_item"]) == (1, 1)
    assert result["replays_other_item"] == 0


def test_a_deliberate_replay_answered_with_another_item_is_counted_and_duplicates():
    records = [create(1.0, A, "id-a"), replay(9.0, A, "id-other")]
    result = reconcile(records, [stored("id-a", A), stored("id-other", A)])
    assert result["replays_other_item"] == 1
    assert defects(result) == {"duplicates": 1}


def test_a_copy_answered_when_the_original_never_was_acknowledges_the_create():
    """Sent twice at once: the run ended before the original's answer; the copy's 201 names
    the item, which is then no orphan."""
    records = [replay(1.0, A, "id-a")]
    result = reconcile(records, [stored("id-a", A)])
    assert defects(result) == {}
    assert result["acknowledged"] == 1


def test_an_item_of_a_create_that_was_sent_but_never_recorded_is_no_orphan():
    """A request cut when the run stopped its users leaves no record; its token was written
    before it went out (sent-*.txt), so its item is an unanswered create, not an orphan."""
    without = reconcile([create(1.0, A, "id-a")], [stored("id-a", A), stored("id-b", B)])
    assert defects(without) == {"orphans": 1}
    result = reconcile([create(1.0, A, "id-a")], [stored("id-a", A), stored("id-b", B)], sent=[A, B])
    assert defects(result) == {}
    assert result["unacknowledged_present"] == 1 and result["creates_attempted"] == 2

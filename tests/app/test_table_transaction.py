"""The entity group transactions app/table_transaction.py writes and reads itself (the SDK's
multipart code costs more CPU than a whole insert). Against Azurite they run in
test_store_contract.py; here the parts a real service answer may not reach."""

from __future__ import annotations

import pytest

from app.table_transaction import Delete, Failure, Insert, Replace, encode, read_failure

SUCCESS = (
    b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    b"--changesetresponse_2\r\nContent-Type: application/http\r\n"
    b'Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\nETag: W/"x"\r\n\r\n\r\n'
    b"--changesetresponse_2\r\nContent-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
    b"--changesetresponse_2--\r\n--batchresponse_1--\r\n"
)
FAILURE = (
    b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
    b"--changesetresponse_2\r\nContent-Type: application/http\r\n"
    b"Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-ID: 2\r\n"
    b"Content-Type: application/json;odata=minimalmetadata;charset=utf-8\r\n\r\n"
    b'{"odata.error":{"code":"EntityAlreadyExists","message":{"lang":"en-US",'
    b'"value":"1:The specified entity already exists.\\nRequestId:r"}}}\r\n'
    b"--changesetresponse_2--\r\n--batchresponse_1--\r\n"
)


def test_a_transaction_where_every_operation_succeeded_has_no_failure():
    assert read_failure(SUCCESS) is None


def test_a_failure_names_the_operation_its_status_and_code():
    assert read_failure(FAILURE) == Failure(index=1, status=409, code="EntityAlreadyExists")


def test_a_failure_without_an_index_is_taken_as_the_first_operation():
    assert read_failure(FAILURE.replace(b'"value":"1:', b'"value":"')).index == 0


def test_an_answer_that_is_no_transaction_response_is_refused():
    with pytest.raises(ValueError, match="not a transaction response"):
        read_failure(b'{"odata.error":{"code":"InvalidInput"}}')


def test_keys_in_urls_are_escaped_as_the_sdk_escapes_them():
    _, body = encode(
        "http://127.0.0.1:1/acct",
        "Items",
        [Replace({"PartitionKey": "o'neil x/y", "RowKey": "item"}, 'W/"1"'), Delete("a#b", "r")],
    )
    assert b"PUT http://127.0.0.1:1/acct/Items(PartitionKey='o%27%27neil%20x%2Fy'" in body
    assert b"DELETE http://127.0.0.1:1/acct/Items(PartitionKey='a%23b',RowKey='r')" in body
    assert b'If-Match: W/"1"' in body and b"If-Match: *" in body


def test_entities_carry_the_types_the_sdk_gives_them():
    _, body = encode("http://h/a", "T", [Insert({"Name": "x", "At": 1.5, "Done": True, "N": 3})])
    assert b'"Name@odata.type": "Edm.String"' in body
    assert b'"At@odata.type": "Edm.Double"' in body
    assert b'"Done": true' in body and b'"N": 3' in body and b"Done@" not in body


def test_an_integer_beyond_int32_is_refused_not_silently_mistyped():
    with pytest.raises(TypeError, match="Int32"):
        encode("http://h/a", "T", [Insert({"At": 1_800_000_000_000})])

"""Azurite, the local stand-in for the one Cosmos DB for Table account (a real process)."""

from __future__ import annotations

import socket

import pytest
from azure.data.tables import TableClient

from loadtests.azurite import Azurite
from loadtests.processes import TopologyError, group_alive


def test_a_taken_port_is_named_and_nothing_is_started(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        azurite = Azurite(tmp_path, port=port)
        with pytest.raises(
            TopologyError,
            match=f"azurite \\(the table store\\): port 127.0.0.1:{port} is already in use",
        ):
            azurite.start()
    assert azurite.process is None


def test_items_survive_a_stop_and_restart_and_nothing_is_left_running(tmp_path):
    azurite = Azurite(tmp_path)
    azurite.start()
    try:
        azurite.create_table("Durable")
        entity = {"PartitionKey": "p", "RowKey": "item", "Name": "kept on disk"}
        with TableClient.from_connection_string(azurite.connection_string, "Durable") as table:
            table.create_entity(entity)
        azurite.stop()
        assert not group_alive(azurite.process.pid)
        azurite.restart()
        with TableClient.from_connection_string(azurite.connection_string, "Durable") as table:
            assert table.get_entity("p", "item")["Name"] == "kept on disk"
        assert (tmp_path / "azurite").is_dir()
    finally:
        azurite.stop()
    assert not group_alive(azurite.process.pid)


def test_each_start_has_its_own_account_key(tmp_path):
    assert Azurite(tmp_path).key != Azurite(tmp_path).key

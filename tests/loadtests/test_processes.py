"""Process trees and groups of the local topology (loadtests.processes), on real processes."""

from __future__ import annotations

import subprocess

import psutil

from loadtests.processes import kill_tree
from tests.waiting import wait_until


def test_kill_tree_kills_a_process_and_every_descendant_left_in_its_group():
    # bash, its child, a subshell and the subshell's child, all in this test's process group: a group kill
    # cannot single them out, kill_tree must find them.
    parent = subprocess.Popen(["bash", "-c", "sleep 300 & (sleep 300 & wait) & wait"])
    try:
        def descendants():
            kids = psutil.Process(parent.pid).children(recursive=True)
            return kids if len(kids) >= 3 else None

        tree = wait_until(descendants, "bash started its child, the subshell and its child")
        kill_tree(parent.pid)
        parent.wait(timeout=30)
        wait_until(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                   for p in tree),
                   "every descendant gone", details=lambda: str(tree))
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_kill_tree_of_a_process_already_gone_is_no_error():
    done = subprocess.Popen(["true"])
    done.wait()
    kill_tree(done.pid)

"""Fixtures of the stacks' tests: the private network mode, synthesized once per session.

`private_stack_files`: what `python main.py --set network.mode=private` writes (both
environments at their own topologies, and the bootstrap stack), through the same path
(config -> validation -> App -> aspects -> permission model -> cdktf.out).
"""

import json
from pathlib import Path

import pytest

PRIVATE = {"network.mode": "private"}


@pytest.fixture(scope="session")
def private_stack_files(tmp_path_factory) -> dict[str, Path]:
    """`{"dev": ..., "prod": ..., "bootstrap": ...}`: paths of the cdk.tf.json files."""
    from stacks.bootstrap_config import load_bootstrap
    from stacks.config import load_environments
    from stacks.synth import synthesize

    written = synthesize(load_environments(PRIVATE), tmp_path_factory.mktemp("private"),
                         bootstrap=load_bootstrap())
    return {path.parent.name.removeprefix("todo-api-"): path for path in written}


@pytest.fixture(scope="session")
def private_stacks(private_stack_files) -> dict[str, dict]:
    """`{environment: parsed cdk.tf.json}` of the private-mode environment stacks."""
    return {
        env: json.loads(path.read_text(encoding="utf-8"))
        for env, path in private_stack_files.items()
        if env != "bootstrap"
    }

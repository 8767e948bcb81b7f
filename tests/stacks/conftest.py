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


# auth.mode = "entra" in both environments, dev keeping the subscription key and prod without it
# (the token is then the only check): one synth for every test of the Entra ID resources.
OWNER = "11111111-1111-4111-8111-111111111111"
EXTRA_CLIENT = "22222222-2222-4222-8222-222222222222"
ENTRA = {
    "dev": {"auth.mode": "entra", "auth.owner_object_ids": OWNER},
    "prod": {"auth.mode": "entra", "auth.owner_object_ids": OWNER,
             "auth.client_ids": EXTRA_CLIENT, "auth.subscription_required": False},
}


@pytest.fixture(scope="session")
def entra_stacks(tmp_path_factory) -> dict[str, dict]:
    """`{environment: parsed cdk.tf.json}` with auth.mode = "entra" (ENTRA), and "bootstrap"."""
    from stacks.bootstrap_config import load_bootstrap
    from stacks.config import load_environment
    from stacks.synth import synthesize

    configs = [load_environment(env, overrides) for env, overrides in ENTRA.items()]
    written = synthesize(configs, tmp_path_factory.mktemp("entra"), bootstrap=load_bootstrap())
    return {path.parent.name.removeprefix("todo-api-"): json.loads(path.read_text("utf-8"))
            for path in written}


PUBLIC = {"network.mode": "public"}


@pytest.fixture(scope="session")
def public_stack_files(tmp_path_factory) -> dict[str, Path]:
    """`{environment: path of cdk.tf.json}` with network.mode = "public" in both environments
    at their own topologies (prod ships private): the public mode's own checks."""
    from stacks.config import load_environments
    from stacks.synth import synthesize

    written = synthesize(load_environments(PUBLIC), tmp_path_factory.mktemp("public"))
    return {path.parent.name.removeprefix("todo-api-"): path for path in written}


@pytest.fixture(scope="session")
def public_stacks(public_stack_files) -> dict[str, dict]:
    """`{environment: parsed cdk.tf.json}` of `public_stack_files`."""
    return {env: json.loads(path.read_text("utf-8")) for env, path in public_stack_files.items()}

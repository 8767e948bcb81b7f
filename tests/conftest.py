"""Shared session fixtures.

`synthesized_stacks`: every environment (dev, prod) x topology (single, multi-region, dual),
synthesized exactly once per session through the same path as `python main.py`
(config -> validation -> App -> aspects -> cdktf.out), as parsed cdk.tf.json dicts keyed
`(environment, topology)`. jsii starts lazily, the first time a test asks for it.
"""

import json
from pathlib import Path

import pytest

from tests.stacks.synthesized import ENVIRONMENTS, TOPOLOGIES, topology_overrides

# No process outlives the run that started it; SIGTERM tears fixtures down (tests/leftovers.py).
pytest_plugins = ("tests.leftovers",)


@pytest.fixture(scope="session")
def synthesized_stack_files(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """`{(environment, topology): path to cdk.tf.json}` for all 6 combinations."""
    from stacks.config import load_environment
    from stacks.synth import synthesize

    root = tmp_path_factory.mktemp("synth")
    files: dict[tuple[str, str], Path] = {}
    for topology in TOPOLOGIES:
        configs = [load_environment(env, topology_overrides(env, topology)) for env in ENVIRONMENTS]
        written = synthesize(configs, root / topology)
        for env, path in zip(ENVIRONMENTS, written, strict=True):
            assert path.parent.name == f"todo-api-{env}"
            files[(env, topology)] = path
    return files


@pytest.fixture(scope="session")
def synthesized_bootstrap_file(tmp_path_factory) -> Path:
    """cdk.tf.json of todo-api-bootstrap, synthesized beside the default environment stacks
    (config/bootstrap.toml as shipped), as `python main.py` writes it."""
    from stacks.bootstrap_config import load_bootstrap
    from stacks.config import load_environments
    from stacks.synth import synthesize

    written = synthesize(load_environments(), tmp_path_factory.mktemp("bootstrap"),
                         bootstrap=load_bootstrap())
    [path] = [p for p in written if p.parent.name == "todo-api-bootstrap"]
    return path


@pytest.fixture(scope="session")
def synthesized_stacks(synthesized_stack_files) -> dict[tuple[str, str], dict]:
    """`{(environment, topology): parsed cdk.tf.json}` for all 6 combinations."""
    return {
        key: json.loads(path.read_text(encoding="utf-8"))
        for key, path in synthesized_stack_files.items()
    }


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One real Azurite Table service for the session (stopped at the end, nothing left)."""
    from loadtests.azurite import Azurite

    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    server.stop()

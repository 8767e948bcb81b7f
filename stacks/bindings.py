"""Import the prebuilt provider bindings without their 1,500-module package `__init__`.

`import cdktf_cdktf_provider_azurerm.linux_web_app` first runs the package `__init__`, which
imports every resource module (~10 s of a ~13 s synth, hashicorp/terraform-cdk#3753). The
submodules need only two things from their parent: a package `__path__` to be found on, and
`.._jsii`, which loads the jsii assembly. So we register a bare parent package (same name,
same path, same spec) and let each submodule import as usual; the assembly still loads once,
through the package's own `_jsii` module, so the synthesized JSON is byte-identical
(tests/stacks/test_fast_import.py, `python -m benchmarks.synth`).

Set TODO_API_PLAIN_PROVIDER_IMPORT=1 to take the plain path (the benchmark's baseline).
"""

import importlib
import importlib.util
import os
import sys
import types

PROVIDER_PACKAGES = (
    "cdktf_cdktf_provider_azurerm",
    "cdktf_cdktf_provider_random",
    "cdktf_cdktf_provider_time",
    "cdktf_cdktf_provider_github",
    "cdktf_cdktf_provider_azuread",
)
PLAIN_IMPORT_ENV = "TODO_API_PLAIN_PROVIDER_IMPORT"

# jsii's Node runtime prints a red end-of-life banner on Node 20; the variable takes a
# comma-separated list of major versions to keep quiet about. CI pins a supported Node.
NODE_BANNER_ENV = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
QUIET_NODE_MAJORS = "20"


def prepare() -> None:
    """Call before the first provider import (stacks/__init__.py does)."""
    os.environ.setdefault(NODE_BANNER_ENV, QUIET_NODE_MAJORS)
    plain = os.environ.get(PLAIN_IMPORT_ENV) == "1"
    for name in PROVIDER_PACKAGES:
        if plain:
            importlib.import_module(name)
        elif name not in sys.modules:
            sys.modules[name] = _bare_package(name)


def _bare_package(name: str) -> types.ModuleType:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"provider bindings {name} are not installed")
    package = types.ModuleType(name, "bare parent package: see stacks/bindings.py")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = name
    return package

"""checkov over every synthesized stack: in each network mode nothing fails except that mode's
entries of the checked-in skip list, every entry gives its design reason and is still needed,
and the private mode fails on fewer checks than the public one."""

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
SKIP_LIST = yaml.safe_load((REPO / "stacks" / "checkov-skips.yaml").read_text(encoding="utf-8"))
MODES = ("public", "private")
# The stacks `python main.py` writes by default: dev single, prod multi-region.
DEFAULT_TOPOLOGIES = {"dev": "single", "prod": "multi-region"}
# What a VNet, private endpoints and a vault firewall fix: the reasons private mode removes.
FIXED_BY_PRIVATE_MODE = {"CKV_AZURE_101", "CKV_AZURE_109", "CKV2_AZURE_32"}


def skips(mode: str) -> dict[str, str]:
    """Check id -> design reason of the checks that fail on purpose in `mode`: an entry that is
    a reason holds in every mode, a mapping names its modes."""
    return {
        check_id: entry if isinstance(entry, str) else entry[mode]
        for check_id, entry in SKIP_LIST.items()
        if isinstance(entry, str) or mode in entry
    }


def checkov(files: list[Path]) -> dict:
    """One checkov run over `files`, without the skip list."""
    arguments = [a for path in files for a in ("-f", str(path))]
    result = subprocess.run(
        [str(CHECKOV), "--framework", "terraform_json", "--skip-download", "-o", "json",
         *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def failing(report: dict, files: list[Path] | None = None) -> set[str]:
    """The check ids that fail (in `files` only, if given)."""
    paths = None if files is None else {str(path) for path in files}
    return {
        failure["check_id"]
        for failure in report["results"]["failed_checks"]
        if paths is None or failure["file_abs_path"] in paths
    }


def shipped_mode(environment: str) -> str:
    from stacks.config import load_environment

    return load_environment(environment).network.mode


@pytest.fixture(scope="module")
def public_files(synthesized_stack_files, public_stack_files,
                 synthesized_bootstrap_file) -> list[Path]:
    """Every environment x topology stack that ships public (dev), each environment forced
    public at its own topology (prod ships private), and the bootstrap stack."""
    shipped = [path for (env, _), path in synthesized_stack_files.items()
               if shipped_mode(env) == "public"]
    forced = [path for env, path in public_stack_files.items() if shipped_mode(env) != "public"]
    return [*shipped, *forced, synthesized_bootstrap_file]


@pytest.fixture(scope="module")
def private_files(private_stack_files, synthesized_stack_files) -> list[Path]:
    """`python main.py --set network.mode=private` (dev, prod and the bootstrap stack), and
    the other topologies of what ships private (prod)."""
    shipped = [path for (env, topology), path in synthesized_stack_files.items()
               if shipped_mode(env) == "private" and topology != DEFAULT_TOPOLOGIES[env]]
    return [*private_stack_files.values(), *shipped]


@pytest.fixture(scope="module")
def reports(public_files, private_files) -> dict[str, tuple[list[Path], dict]]:
    return {"public": (public_files, checkov(public_files)),
            "private": (private_files, checkov(private_files))}


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def test_checkov_parses_every_stack(reports, mode):
    files, report = reports[mode]
    assert report["summary"]["parsing_errors"] == 0
    checked = {r["file_path"] for r in report["results"]["passed_checks"]}
    assert len(checked) == len(files)


def test_no_check_fails_outside_the_modes_skip_list(reports, mode):
    _, report = reports[mode]
    unexpected = defaultdict(set)
    for failure in report["results"]["failed_checks"]:
        if failure["check_id"] not in skips(mode):
            unexpected[failure["check_id"]].add(failure["resource"])
    assert dict(unexpected) == {}


def test_every_skip_of_the_mode_is_still_needed(reports, mode):
    _, report = reports[mode]
    assert set(skips(mode)) - failing(report) == set()


@pytest.mark.parametrize(("check_id", "entry_mode"),
                         sorted((c, m) for m in MODES for c in skips(m)))
def test_every_skip_gives_a_design_reason(check_id, entry_mode):
    assert len(skips(entry_mode)[check_id].split()) >= 8


def test_the_skip_list_names_only_known_modes():
    per_mode = [entry for entry in SKIP_LIST.values() if not isinstance(entry, str)]
    assert per_mode and all(entry and set(entry) <= set(MODES) for entry in per_mode)


def test_private_mode_fails_on_fewer_checks_than_public(reports, public_stack_files,
                                                        private_stack_files,
                                                        synthesized_bootstrap_file):
    """The same environments and topologies (main.py's defaults) and the bootstrap stack, public
    against private: the VNet, the private endpoints and the vault's firewall fix three checks;
    what private mode adds (subnets without an NSG) is one."""
    _, public_report = reports["public"]
    public = failing(public_report, [*public_stack_files.values(), synthesized_bootstrap_file])
    private = failing(reports["private"][1], list(private_stack_files.values()))
    assert len(private) < len(public), (sorted(public - private), sorted(private - public))
    assert public - private == FIXED_BY_PRIVATE_MODE
    assert private - public == {"CKV2_AZURE_31"}


def test_cosmos_account_passes_the_key_and_network_checks_and_fails_only_skipped_ones(
    reports, public_files
):
    """No keys (CKV_AZURE_140, _132) and a firewall (CKV_AZURE_99) in every public stack; what
    fails is only the public endpoint and the Microsoft-managed key, each with its skip
    reason."""
    environments = [json.loads(path.read_text("utf-8")) for path in public_files]
    environments = [stack for stack in environments if "azurerm_cosmosdb_account" in stack.get(
        "resource", {})]
    accounts = {
        f"resource.{logical_id}"
        for stack in environments
        for logical_id in stack["resource"]["azurerm_cosmosdb_account"]
    }
    results = outcomes(reports["public"][1], accounts)
    stacks = len(environments)
    for check_id in ("CKV_AZURE_99", "CKV_AZURE_132", "CKV_AZURE_140"):
        assert len(results["passed"][check_id]) == stacks, check_id
    assert set(results["failed"]) == {"CKV_AZURE_100", "CKV_AZURE_101"}
    assert set(results["failed"]) <= set(skips("public"))


def test_private_cosmos_account_has_no_public_endpoint(reports, private_files):
    environments = [json.loads(path.read_text("utf-8")) for path in private_files]
    environments = [stack for stack in environments
                    if "azurerm_cosmosdb_account" in stack.get("resource", {})]
    accounts = {
        f"resource.{logical_id}"
        for stack in environments
        for logical_id in stack["resource"]["azurerm_cosmosdb_account"]
    }
    results = outcomes(reports["private"][1], accounts)
    # dev and prod forced private, prod's other two topologies as shipped
    assert len(results["passed"]["CKV_AZURE_101"]) == len(environments) == 4
    assert set(results["failed"]) == {"CKV_AZURE_100"}


def outcomes(report: dict, resources: set[str]) -> dict[str, dict[str, set[str]]]:
    """{"passed"/"failed": {check id: files}} for the checks on `resources`."""
    results = {"passed": defaultdict(set), "failed": defaultdict(set)}
    for outcome in results:
        for check in report["results"][f"{outcome}_checks"]:
            if check["resource"] in resources:
                results[outcome][check["check_id"]].add(check["file_abs_path"])
    return results

"""checkov over every synthesized stack: nothing fails except the checked-in skip list, and
every skip-list entry gives its design reason and is still needed."""

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
SKIPS = yaml.safe_load((REPO / "stacks" / "checkov-skips.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def checkov_report(synthesized_stack_files, synthesized_bootstrap_file) -> dict:
    """One checkov run over all six cdk.tf.json files and the bootstrap stack's, without the
    skip list."""
    files = [a for p in [*synthesized_stack_files.values(), synthesized_bootstrap_file]
             for a in ("-f", str(p))]
    result = subprocess.run(
        [str(CHECKOV), "--framework", "terraform_json", "--skip-download", "-o", "json", *files],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_parses_every_stack(checkov_report, synthesized_stack_files):
    assert checkov_report["summary"]["parsing_errors"] == 0
    checked = {r["file_path"] for r in checkov_report["results"]["passed_checks"]}
    assert len(checked) == len(synthesized_stack_files) + 1


def test_no_check_fails_outside_the_skip_list(checkov_report):
    unexpected = defaultdict(set)
    for failure in checkov_report["results"]["failed_checks"]:
        if failure["check_id"] not in SKIPS:
            unexpected[failure["check_id"]].add(failure["resource"])
    assert dict(unexpected) == {}


def test_every_skip_is_still_needed(checkov_report):
    failing = {failure["check_id"] for failure in checkov_report["results"]["failed_checks"]}
    assert set(SKIPS) - failing == set()


@pytest.mark.parametrize("check_id", sorted(SKIPS))
def test_every_skip_gives_a_design_reason(check_id):
    assert len(SKIPS[check_id].split()) >= 8


def test_cosmos_account_passes_the_key_and_network_checks_and_fails_only_skipped_ones(
    checkov_report, synthesized_stacks
):
    """No keys (CKV_AZURE_140, _132) and a firewall (CKV_AZURE_99) in every stack; what fails
    is only the public endpoint and the Microsoft-managed key, each with its skip reason."""
    accounts = {
        f"resource.{logical_id}"
        for stack in synthesized_stacks.values()
        for logical_id in stack["resource"]["azurerm_cosmosdb_account"]
    }
    results = {"passed": defaultdict(set), "failed": defaultdict(set)}
    for outcome in results:
        for check in checkov_report["results"][f"{outcome}_checks"]:
            if check["resource"] in accounts:
                results[outcome][check["check_id"]].add(check["file_abs_path"])
    stacks = len(synthesized_stacks)
    for check_id in ("CKV_AZURE_99", "CKV_AZURE_132", "CKV_AZURE_140"):
        assert len(results["passed"][check_id]) == stacks, check_id
    assert set(results["failed"]) == {"CKV_AZURE_100", "CKV_AZURE_101"}
    assert set(results["failed"]) <= set(SKIPS)

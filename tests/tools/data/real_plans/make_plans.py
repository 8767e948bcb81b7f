"""Regenerate the real Terraform plans in this folder, offline.

    .venv/bin/python tests/tools/data/real_plans/make_plans.py [--out DIR] [NAME ...]

Each scenario writes small Terraform configurations into a temporary folder, prepares the
state with `terraform apply` where it needs one, saves a plan (`terraform plan -out`) and writes
`<name>.json` (`terraform show -json` of the plan) and `<name>.txt` (`terraform show -no-color`
of it). Only the built-in `terraform_data` resource, `moved`, `removed` and `import` blocks,
outputs, a local module and the `local-exec` provisioner are used: `terraform init` installs no
provider and touches no network (the CLI configuration is empty, HOME is a temporary folder).

What is normalized, so that a rerun writes the same bytes: the plan's `timestamp`, the order
of `relevant_attributes` (random), the random ids Terraform gives `terraform_data` objects
(UUIDs, renumbered in order of appearance) and deposed-object keys, the same way in the JSON
and the text. Nothing else is changed.

The deposed object is real: a `create_before_destroy` replacement whose new object's
create-time provisioner fails leaves the old object deposed (and the new one tainted).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMESTAMP = "2000-01-01T00:00:00Z"
COMPACT_OVER = 100_000  # characters: the 400-resource plan is written compact
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
DEPOSED_JSON = re.compile(r'"(?:deposed|deposed_key)": "([0-9a-f]{8})"')

# The secrets of the `sensitive` scenario: none may appear in a rendered comment.
SECRETS = (
    "s3cr3t-Hunter2-value",  # var.secret: copied unflagged via terraform_data.marked.output
    "old-R0tated-secret",  # var.rotated before: leaked in the prior state of rotated_copy
    "new-R0tated-secret",  # var.rotated after
    "api-K3y-nonsensitive",  # var.api_key: unflagged by nonsensitive()
    "M1IIbogus-Key-Material",  # var.pem, multi-line: Terraform prints it as a heredoc
    "out-S3cret-1",  # sensitive output `token` in the `outputs` scenario, before
    "out-S3cret-2",  # ... and after
)


@dataclass(frozen=True)
class Step:
    """One configuration (file name -> text) and what to run on it: "apply", "apply-fails"
    (an apply expected to fail, as for the deposed object) or "plan" (the saved plan)."""

    files: dict[str, str]
    run: str = "plan"
    plan_args: tuple[str, ...] = ()


SENSITIVE_VARIABLES = """
variable "secret" {
  type      = string
  sensitive = true
}
variable "rotated" {
  type      = string
  sensitive = true
}
variable "api_key" {
  type      = string
  sensitive = true
  default   = "api-K3y-nonsensitive"
}
variable "pem" {
  type      = string
  sensitive = true
  default   = "-----BEGIN TEST KEY-----\\nM1IIbogus-Key-Material\\n-----END TEST KEY-----\\n"
}
"""

SENSITIVE_BEFORE = SENSITIVE_VARIABLES + """
resource "terraform_data" "marked" {
  input = var.secret
}
resource "terraform_data" "rotated" {
  input = var.rotated
}
# terraform_data's `output` copies `input` without its sensitive mark (hashicorp/terraform#35609)
resource "terraform_data" "rotated_copy" {
  input = terraform_data.rotated.output
}
resource "terraform_data" "pem" {
  input = var.pem
}
"""

SENSITIVE_AFTER = SENSITIVE_BEFORE + """
resource "terraform_data" "copy" {
  input = terraform_data.marked.output
}
resource "terraform_data" "unflagged" {
  input = nonsensitive(var.api_key)
}
resource "terraform_data" "pem_copy" {
  input = terraform_data.pem.output
}
resource "terraform_data" "nested" {
  input = { user = "admin", password = var.secret }
}
output "token" {
  value     = var.secret
  sensitive = true
}
output "leaked" {
  value = terraform_data.marked.output
}
"""

OUTPUTS_BEFORE = """
resource "terraform_data" "app" {
  input = "v1"
}
output "kept" {
  value = "same"
}
output "changed" {
  value = "before"
}
output "dropped" {
  value = "bye"
}
output "token" {
  value     = "out-S3cret-1"
  sensitive = true
}
"""

OUTPUTS_AFTER = """
resource "terraform_data" "app" {
  input = "v1"
}
output "kept" {
  value = "same"
}
output "changed" {
  value = "after"
}
output "added" {
  value = "hello"
}
output "token" {
  value     = "out-S3cret-2"
  sensitive = true
}
"""

DEPOSED = """
variable "generation" {
  type = string
}
resource "terraform_data" "db" {
  triggers_replace = var.generation
  lifecycle {
    create_before_destroy = true
  }
  provisioner "local-exec" {
    command = var.generation == "2" ? "exit 1" : "true"
  }
}
"""

ODD_KEYS = """
resource "terraform_data" "odd" {
  for_each = toset(["plain", "a|b", "tick`key", "both|`x`"])
  input    = each.key
}
module "m" {
  source   = "./m"
  for_each = toset(["k|1"])
}
"""


def _vars(**values: str) -> str:
    return "".join(f'{name} = "{value}"\n' for name, value in values.items())


def _pair(before: str, after: str, **plan: object) -> list[Step]:
    return [Step({"main.tf": before}, "apply"), Step({"main.tf": after}, **plan)]


SCENARIOS: dict[str, list[Step]] = {
    "create": [Step({"main.tf": 'resource "terraform_data" "app" {\n  input = "v1"\n}\n'
                     'resource "terraform_data" "db" {\n  input = { tier = "basic" }\n}\n'})],
    "update": _pair('resource "terraform_data" "app" {\n  input = "v1"\n}\n',
                    'resource "terraform_data" "app" {\n  input = "v2"\n}\n'),
    "replace": _pair('resource "terraform_data" "app" {\n  triggers_replace = "v1"\n}\n',
                     'resource "terraform_data" "app" {\n  triggers_replace = "v2"\n}\n'),
    "delete": _pair('resource "terraform_data" "app" {}\nresource "terraform_data" "old" {}\n',
                    'resource "terraform_data" "app" {}\n'),
    "forget": _pair(
        'resource "terraform_data" "app" {}\nresource "terraform_data" "legacy" {}\n',
        'resource "terraform_data" "app" {}\n'
        'removed {\n  from = terraform_data.legacy\n  lifecycle {\n    destroy = false\n  }\n}\n'),
    "move": _pair(
        'resource "terraform_data" "old" {\n  input = "a"\n}\n'
        'resource "terraform_data" "old2" {\n  input = "b"\n}\n',
        'resource "terraform_data" "new" {\n  input = "a"\n}\n'
        'moved {\n  from = terraform_data.old\n  to   = terraform_data.new\n}\n'
        'resource "terraform_data" "new2" {\n  input = "b2"\n}\n'
        'moved {\n  from = terraform_data.old2\n  to   = terraform_data.new2\n}\n'),
    "import": [Step({"main.tf": (
        'import {\n  to = terraform_data.plain\n  id = "existing-1"\n}\n'
        'resource "terraform_data" "plain" {}\n'
        'import {\n  to = terraform_data.changed\n  id = "existing-2"\n}\n'
        'resource "terraform_data" "changed" {\n  input = "set after import"\n}\n')})],
    "outputs": _pair(OUTPUTS_BEFORE, OUTPUTS_AFTER),
    "sensitive": [
        Step({"main.tf": SENSITIVE_BEFORE, "terraform.tfvars": _vars(
            secret="s3cr3t-Hunter2-value", rotated="old-R0tated-secret")}, "apply"),
        Step({"main.tf": SENSITIVE_AFTER, "terraform.tfvars": _vars(
            secret="s3cr3t-Hunter2-value", rotated="new-R0tated-secret")}),
    ],
    "many": [Step({"main.tf": 'resource "terraform_data" "node" {\n  count = 400\n'
                   '  input = "node-${count.index}"\n}\n'})],
    "destroy": [
        Step({"main.tf": 'resource "terraform_data" "app" {\n  input = "v1"\n}\n'
              'resource "terraform_data" "db" {\n  triggers_replace = "x"\n}\n'}, "apply"),
        Step({"main.tf": 'resource "terraform_data" "app" {\n  input = "v1"\n}\n'
              'resource "terraform_data" "db" {\n  triggers_replace = "x"\n}\n'},
             plan_args=("-destroy",)),
    ],
    "odd_keys": [Step({"main.tf": ODD_KEYS,
                       "m/main.tf": 'resource "terraform_data" "x" {\n  input = "module"\n}\n'})],
    "deposed": [
        Step({"main.tf": DEPOSED, "terraform.tfvars": _vars(generation="1")}, "apply"),
        Step({"main.tf": DEPOSED, "terraform.tfvars": _vars(generation="2")}, "apply-fails"),
        Step({"main.tf": DEPOSED, "terraform.tfvars": _vars(generation="2")}),
    ],
}


def offline_env(home: Path) -> dict[str, str]:
    """The caller's environment without TF_* settings, plus an empty CLI configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "CHECKPOINT_"))}
    env.update(TF_CLI_CONFIG_FILE=os.devnull, HOME=str(home), TF_IN_AUTOMATION="1",
               CHECKPOINT_DISABLE="1")
    return env


def _terraform(terraform: str, args: list[str], cwd: Path, env: dict, ok: bool = True) -> str:
    result = subprocess.run([terraform, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, check=False, timeout=300)
    if (result.returncode == 0) != ok:
        raise RuntimeError(f"terraform {' '.join(args)} in {cwd}: exit {result.returncode}, "
                           f"expected {'success' if ok else 'failure'}\n{result.stderr}")
    return result.stdout


def plan_scenario(name: str, work: Path, terraform: str = "terraform") -> tuple[str, str]:
    """Run scenario `name` in the empty folder `work`: (plan JSON text, plan text)."""
    env = offline_env(work / "home")
    (work / "home").mkdir()
    root = work / "config"
    for step in SCENARIOS[name]:
        for path, text in step.files.items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
        _terraform(terraform, ["init", "-input=false", "-no-color"], root, env)
        if step.run in ("apply", "apply-fails"):
            _terraform(terraform, ["apply", "-auto-approve", "-input=false", "-no-color"],
                       root, env, ok=step.run == "apply")
            continue
        _terraform(terraform, ["plan", "-input=false", "-no-color", "-out=tfplan",
                               *step.plan_args], root, env)
    plan_json = _terraform(terraform, ["show", "-json", "tfplan"], root, env)
    plan_text = _terraform(terraform, ["show", "-no-color", "tfplan"], root, env)
    return normalize(plan_json, plan_text)


def normalize(plan_json: str, plan_text: str) -> tuple[str, str]:
    """Fixed timestamp, renumbered UUIDs and deposed keys (same in both). The JSON is indented
    for review, unless that makes it larger than COMPACT_OVER (then compact, as Terraform)."""
    plan = json.loads(plan_json)
    if "timestamp" in plan:
        plan["timestamp"] = TIMESTAMP
    if "relevant_attributes" in plan:  # Terraform lists them in random order
        plan["relevant_attributes"].sort(key=lambda a: json.dumps(a, sort_keys=True))
    text_json = json.dumps(plan, indent=1) + "\n"
    if len(text_json) > COMPACT_OVER:
        text_json = json.dumps(plan, separators=(",", ":")) + "\n"
    renames: dict[str, str] = {}
    for found in UUID.findall(text_json) + UUID.findall(plan_text):
        renames.setdefault(found, f"00000000-0000-4000-8000-{len(renames) + 1:012d}")
    for found in DEPOSED_JSON.findall(text_json):
        renames.setdefault(found, f"dead{len(renames) + 1:04d}")
    for old, new in renames.items():
        text_json, plan_text = text_json.replace(old, new), plan_text.replace(old, new)
    return text_json, plan_text


def write_scenario(name: str, out: Path, terraform: str = "terraform") -> None:
    with tempfile.TemporaryDirectory(prefix=f"plan-{name}-") as work:
        plan_json, plan_text = plan_scenario(name, Path(work), terraform)
    (out / f"{name}.json").write_text(plan_json)
    (out / f"{name}.txt").write_text(plan_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"scenarios to regenerate (default: all): {', '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--terraform", default="terraform")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}: "
                     f"choose from {', '.join(SCENARIOS)}")
    for name in args.names or SCENARIOS:
        write_scenario(name, args.out, args.terraform)
        print(f"{args.out / name}.json, .txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())

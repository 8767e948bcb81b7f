"""Synthesize every environment's stack into cdktf.out/, all or nothing.

Configuration is validated before the App exists; synthesis goes to a temporary directory
beside the output directory and its files are moved into place only when every stack
synthesized and passed the policy aspects. Existing files in the output directory that synth
does not produce (Terraform's `.terraform/`, lock files) are left alone.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

from stacks.bootstrap_config import BootstrapConfig, load_bootstrap
from stacks.config import EnvironmentConfig
from stacks.openapi import read_openapi
from stacks.permissions import PermissionModel, UnknownResourceType

ERROR_ANNOTATIONS = 'Encountered Annotations with level "ERROR"'


class SynthError(Exception):
    """Synthesis stopped (policy aspects, validations); str() is one or more short lines."""


def build_app(configs: list[EnvironmentConfig], outdir: Path, openapi_json: str | None = None,
              bootstrap: BootstrapConfig | None = None):
    """The environment stacks, then the bootstrap stack whose roles and provider registrations
    are derived from the resource types those stacks hold (`bootstrap=None`: without it)."""
    from cdktf import App

    from stacks.todo_api_stack import TodoApiStack

    if openapi_json is None:
        openapi_json = read_openapi()
    repository = (bootstrap or load_bootstrap()).repository
    app = App(outdir=str(outdir), stack_traces=False)
    stacks = [TodoApiStack(app, config, openapi_json, repository) for config in configs]
    if bootstrap is not None:
        from stacks.bootstrap_stack import BootstrapStack

        model = PermissionModel.of_environments(
            {c.environment: resource_types(s) for c, s in zip(configs, stacks, strict=True)})
        try:
            model.roles()  # every resource type's actions decided
        except UnknownResourceType as error:
            raise SynthError(str(error)) from None
        BootstrapStack(app, bootstrap, model)
    return app


def resource_types(stack) -> frozenset[str]:
    """The Terraform resource types of every resource in a stack's construct tree."""
    from cdktf import TerraformResource

    return frozenset(node.terraform_resource_type for node in stack.node.find_all()
                     if isinstance(node, TerraformResource))


def synth_app(app) -> None:
    """app.synth(), with the error annotations of a failed synth as the error message."""
    try:
        app.synth()
    except RuntimeError as error:  # jsii raises the kernel's error as RuntimeError
        if ERROR_ANNOTATIONS not in str(error):
            raise
        raise SynthError(_annotation_lines(str(error))) from None


def synthesize(
    configs: list[EnvironmentConfig], outdir: Path, openapi_json: str | None = None,
    bootstrap: BootstrapConfig | None = None,
) -> list[Path]:
    """Write cdktf.out/ (manifest + stacks/<stack>/cdk.tf.json); return the stack files."""
    # The cdktf CLI asks the app to keep going on error annotations; we stop instead. Node reads
    # the variable when the jsii kernel starts, which is later (build_app imports cdktf).
    os.environ.pop("CDKTF_CONTINUE_SYNTH_ON_ERROR_ANNOTATIONS", None)
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}-", dir=outdir.parent))
    try:
        synth_app(build_app(configs, staging, openapi_json, bootstrap))
        return _move_into_place(staging, outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, outdir: Path) -> list[Path]:
    written = []
    for source in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = outdir / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        written.append(target)
    return [p for p in written if p.name == "cdk.tf.json"]


def _annotation_lines(message: str) -> str:
    lines = re.findall(r"^\s*(\[[^\]]+\] .*)$", message, flags=re.MULTILINE)
    return "\n".join(lines)

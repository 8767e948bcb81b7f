"""Carry a saved Terraform plan from the plan job to the approval-gated apply job, encrypted.

    python -m tools.delivery.plan_bundle pack --stack-dir cdktf.out/stacks/todo-api-prod --out plan.bundle
    python -m tools.delivery.plan_bundle unpack --bundle plan.bundle --stack-dir cdktf.out/stacks/todo-api-prod

A plan file holds every value Terraform will write, secrets included, and workflow artifacts
can be downloaded by anyone who can read the repository: the bundle (the stack folder's
cdk.tf.json, backend_override.tf.json, .terraform.lock.hcl and the plan `tfplan`) is a tar
encrypted with AES-256-GCM under the key in $PLAN_BUNDLE_KEY (32 random bytes, base64; an
environment secret of `<env>` and `<env>-plan` only, one key per environment, made by the
bootstrap stack). GCM authenticates it too: a bundle that was changed, or made with another
key, is refused. The stack name, the commit ($GITHUB_SHA) and the workflow run
($GITHUB_RUN_ID) are bound to the bundle (authenticated data): a dev bundle cannot be applied
to prod, nor a bundle of another commit or another run (an old approved plan, replayed).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import os
import sys
import tarfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tools.cli import CliError, run_cli, write_atomic

KEY_ENV = "PLAN_BUNDLE_KEY"
PLAN_FILE = "tfplan"
FILES = ("cdk.tf.json", "backend_override.tf.json", ".terraform.lock.hcl", PLAN_FILE)
REQUIRED = ("cdk.tf.json", PLAN_FILE)
MAGIC = b"todo-api-plan-bundle-1\n"
NONCE_BYTES = 12


def key_from_environment() -> bytes:
    value = os.environ.get(KEY_ENV, "")
    try:
        key = base64.b64decode(value, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise CliError(f"${KEY_ENV} must hold 32 random bytes, base64-encoded"
                       " (openssl rand -base64 32)")
    return key


def bound_to(stack: str) -> bytes:
    """What a bundle is bound to: the stack, and the commit and run that made its plan."""
    return "\n".join((stack, os.environ.get("GITHUB_SHA", ""),
                      os.environ.get("GITHUB_RUN_ID", ""))).encode()


def pack(stack_dir: Path, key: bytes) -> bytes:
    missing = [name for name in REQUIRED if not (stack_dir / name).is_file()]
    if missing:
        raise CliError(f"{stack_dir}: missing {', '.join(missing)} (run terraform plan -out=tfplan)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in FILES:
            if (stack_dir / name).is_file():
                archive.add(stack_dir / name, arcname=name)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, buffer.getvalue(), bound_to(stack_dir.name))
    return MAGIC + nonce + sealed


def unpack(bundle: bytes, stack_dir: Path, key: bytes) -> list[str]:
    """Write the bundle's files into `stack_dir`; their names."""
    if not bundle.startswith(MAGIC):
        raise CliError("not a plan bundle (made by `python -m tools.delivery.plan_bundle pack`)")
    body = bundle[len(MAGIC):]
    nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
    try:
        plain = AESGCM(key).decrypt(nonce, sealed, bound_to(stack_dir.name))
    except InvalidTag:
        raise CliError(f"the bundle does not open with this key for stack {stack_dir.name}"
                       " at this commit and run (other key, stack, commit or run, or changed)"
                       ) from None
    stack_dir.mkdir(parents=True, exist_ok=True)
    names = []
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r") as archive:
        for member in archive.getmembers():
            if member.name not in FILES or not member.isfile():
                raise CliError(f"unexpected entry {member.name!r} in the plan bundle")
            write_atomic(stack_dir / member.name, archive.extractfile(member).read())
            names.append(member.name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="encrypt the stack folder's plan")
    packing.add_argument("--stack-dir", type=Path, required=True)
    packing.add_argument("--out", type=Path, required=True)
    unpacking = commands.add_parser("unpack", help="decrypt a bundle into the stack folder")
    unpacking.add_argument("--bundle", type=Path, required=True)
    unpacking.add_argument("--stack-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    key = key_from_environment()
    if args.command == "pack":
        if not args.stack_dir.is_dir():
            raise CliError(f"stack folder {args.stack_dir} not found")
        data = pack(args.stack_dir, key)
        old_umask = os.umask(0o077)
        try:
            write_atomic(args.out, data)
        finally:
            os.umask(old_umask)
        print(f"{args.out}: {len(data):,} bytes, encrypted for {args.stack_dir.name}")
        return 0
    try:
        bundle = args.bundle.read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {args.bundle}: {error.strerror}") from None
    names = unpack(bundle, args.stack_dir, key)
    print(f"{args.stack_dir}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

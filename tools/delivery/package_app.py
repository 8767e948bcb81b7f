"""Build the App Service deploy package: app/ and its pinned runtime requirements, nothing else.

    python -m tools.delivery.package_app [--source app] [--out dist/todo-api-app.zip]

Zip layout (App Service runs `bash app/startup.sh` from the root):

    requirements.txt      app/requirements.txt, exported from uv.lock (Oryx installs it)
    app/...               the service's source and assets

Left out: tests, caches and bytecode, hidden files, certificates and keys. The zip is
deterministic: entries sorted, timestamps fixed, permissions normalised, so the same source
gives the same bytes (and the same SHA-256, printed).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import stat
import sys
import zipfile
from fnmatch import fnmatch
from pathlib import Path

from tools.cli import CliError, run_cli, write_atomic

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("dist/todo-api-app.zip")
REQUIREMENTS = "requirements.txt"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
EXCLUDED_DIRS = {"tests", "test", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_FILES = (
    "test_*.py", "*_test.py", "conftest.py",
    "*.pyc", "*.pyo",
    "*.pem", "*.key", "*.crt", "*.cer", "*.der", "*.pfx", "*.p12", "*.csr", "*.password",
    REQUIREMENTS,  # goes to the zip root instead
)


def is_packaged(relative: Path) -> bool:
    """Whether a path under app/ belongs in the package."""
    if any(part.startswith(".") or part in EXCLUDED_DIRS for part in relative.parts):
        return False
    return not any(fnmatch(relative.name, pattern) for pattern in EXCLUDED_FILES)


def package_files(source: Path) -> list[Path]:
    files = []
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.is_symlink():
            raise CliError(f"{path}: symbolic links are not packaged; replace it with the file")
        if path.is_file() and is_packaged(relative):
            files.append(relative)
    return sorted(files, key=lambda p: p.as_posix())


def _entry(name: str, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    mode = 0o755 if executable else 0o644
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.create_system = 3  # Unix, so the permissions are read back
    return info


def build(source: Path) -> bytes:
    requirements = source / REQUIREMENTS
    if not requirements.is_file():
        raise CliError(f"{requirements} not found: export it from uv.lock first")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_entry(REQUIREMENTS, False), requirements.read_bytes(), compresslevel=9)
        for relative in package_files(source):
            path = source / relative
            name = f"{source.name}/{relative.as_posix()}"
            executable = bool(path.stat().st_mode & stat.S_IXUSR)
            archive.writestr(_entry(name, executable), path.read_bytes(), compresslevel=9)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / "app")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        raise CliError(f"source folder {args.source} not found")
    data = build(args.source)
    write_atomic(args.out, data)
    count = len(zipfile.ZipFile(io.BytesIO(data)).namelist())
    digest = hashlib.sha256(data).hexdigest()
    print(f"{args.out}: {count} files, {len(data):,} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

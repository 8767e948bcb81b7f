"""The deploy package holds the app and its pinned requirements, nothing else, byte-stable."""

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools.cli import CliError
from tools.delivery import package_app

ROOT = Path(__file__).resolve().parents[2]


def names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


@pytest.fixture
def messy_app(tmp_path) -> Path:
    """An app folder with everything a working tree accumulates next to the source."""
    app = tmp_path / "app"
    files = {
        "main.py": "app = None\n", "openapi.json": "{}\n", "requirements.txt": "starlette==1.10.0\n",
        "static/site.css": "body{}\n", "startup.sh": "exec true\n",
        "tests/test_main.py": "", "test_routes.py": "", "routes_test.py": "", "conftest.py": "",
        "__pycache__/main.cpython-311.pyc": "", "store.pyc": "",
        "client.pem": "", "client.key": "", "apim-client.pfx": "", "apim-client.pfx.password": "",
        ".env": "SECRET=1\n", ".certs/ca.pem": "",
    }
    for name, text in files.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text)
    (app / "startup.sh").chmod(0o755)
    return app


def test_package_holds_source_assets_and_root_requirements_only(messy_app):
    assert names(package_app.build(messy_app)) == [
        "requirements.txt", "app/main.py", "app/openapi.json", "app/startup.sh",
        "app/static/site.css",
    ]


def test_requirements_at_the_root_are_the_pinned_export(messy_app):
    archive = zipfile.ZipFile(io.BytesIO(package_app.build(messy_app)))
    assert archive.read("requirements.txt") == b"starlette==1.10.0\n"


def test_startup_script_stays_executable(messy_app):
    archive = zipfile.ZipFile(io.BytesIO(package_app.build(messy_app)))
    assert archive.getinfo("app/startup.sh").external_attr >> 16 & 0o777 == 0o755
    assert archive.getinfo("app/main.py").external_attr >> 16 & 0o777 == 0o644


def test_same_source_gives_the_same_bytes(messy_app):
    first = package_app.build(messy_app)
    (messy_app / "main.py").touch()  # a newer mtime must not matter
    assert package_app.build(messy_app) == first


def test_real_app_package_has_no_tests_caches_certificates_or_infrastructure():
    entries = names(package_app.build(ROOT / "app"))
    assert "requirements.txt" in entries and "app/startup.sh" in entries
    assert all(e == "requirements.txt" or e.startswith("app/") for e in entries)
    unwanted = ("tests/", "test_", "__pycache__", ".pyc", ".pem", ".key", ".pfx", "/.")
    assert [e for e in entries if any(u in e for u in unwanted)] == []


def test_missing_requirements_is_a_clear_error(tmp_path):
    (tmp_path / "app").mkdir()
    with pytest.raises(CliError, match="requirements.txt not found"):
        package_app.build(tmp_path / "app")


def test_cli_writes_the_zip_and_prints_its_digest(messy_app, tmp_path):
    out = tmp_path / "dist" / "app.zip"
    result = subprocess.run(
        [sys.executable, "-m", "tools.delivery.package_app", "--source", str(messy_app), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert out.read_bytes() == package_app.build(messy_app)
    assert result.stdout.startswith(f"{out}: 5 files, ") and "sha256 " in result.stdout

"""Schemathesis against the served OpenAPI document of the real production server: 0 failures.

Bounded: a fixed seed and a small number of examples per operation keep it to seconds. The
exceptions it makes (the subscription key is the gateway's to check; PUT's body id must equal the
path id) are written down in schemathesis.toml next to this file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.contract import OPENAPI_PATH

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_no_failures(production_server, cert_header, tmp_path):
    ((name, value),) = cert_header.items()
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"http://127.0.0.1:{production_server.port}{OPENAPI_PATH}",
        "--header",
        f"{name}: {value}",
        "--max-examples",
        "30",
        "--seed",
        "20260101",
        "--workers",
        "1",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 5" in result.stdout

"""Entry point: `uvicorn app.main:app` locally, app/startup.sh (gunicorn) in production.

Wiring only: logging, settings from the environment (a bad value exits with one line),
telemetry when it is on, the app.
"""

from __future__ import annotations

import logging
import sys

from app.application import create_app
from app.middleware import filter_access_log
from app.settings import load_settings_or_exit


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The Azure SDK logs every HTTP request and response (headers) at INFO: two log lines and
    # their CPU per store call. Its warnings and errors still show; the app logs store outages.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # `uvicorn app.main:app` writes its access line itself: paths as telemetry shows them there
    # too (uvicorn sets its loggers up before it imports the app; the filter is added after).
    filter_access_log()


_configure_logging()
settings = load_settings_or_exit()
if settings.telemetry.enabled:  # OpenTelemetry is imported only then (app/telemetry.py)
    from app.telemetry import configure_telemetry

    configure_telemetry(settings)
app = create_app(settings)

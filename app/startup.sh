#!/usr/bin/env bash
# Production server for the TodoItem API: gunicorn managing uvicorn workers.
# The ONE place the server command lives. App Service's startup command is `bash app/startup.sh`
# (the deploy package's root holds app/ and requirements.txt); the local topology runs the same
# script with HOST=127.0.0.1 PORT=<free port>.
#
#   HOST             bind address (default 0.0.0.0)
#   PORT             port (default 8000)
#   WEB_CONCURRENCY  worker processes (default 1: the in-memory store lives in one process)
#   PYTHON           interpreter with the app's requirements (default: python3 on PATH)
#
# An optional argument names another ASGI app (module:attribute) to serve with exactly these server
# settings; the benchmark uses it for its bare-Starlette baseline. Production passes none.
#
# The settings are checked first, so a bad value stops the start with one line naming it.
# SIGTERM stops gracefully: workers finish in-flight requests (up to 30 s). Access log on stdout,
# its paths as the app's telemetry names them (`/health/{key}`, `/api/TodoItem/{id}`, one fixed
# name for any other path; no query string): the uvicorn worker writes its own access line, which
# gunicorn's --access-logformat cannot change, so app.middleware.gunicorn_logger filters it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m app.settings

exec "$PYTHON" -m gunicorn "${1:-app.main:app}" \
    --worker-class uvicorn_worker.UvicornWorker \
    --workers "${WEB_CONCURRENCY:-1}" \
    --bind "${HOST:-0.0.0.0}:${PORT:-8000}" \
    --graceful-timeout 30 \
    --timeout 60 \
    --keep-alive 75 \
    --access-logfile - \
    --logger-class app.middleware.gunicorn_logger \
    --error-logfile - \
    --no-control-socket

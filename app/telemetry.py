"""OpenTelemetry for the service: request spans, store dependencies, correlated logs.

Imported only when telemetry is on (`Settings.telemetry.enabled`): with it off the app never
imports OpenTelemetry or the Azure Monitor distro, so it costs nothing.

- `configure_telemetry(settings)` (app/main.py, once per worker process) sets up the global
  providers: Microsoft's distro (`azure-monitor-opentelemetry`) when
  APPLICATIONINSIGHTS_CONNECTION_STRING is set, plus a local copy of the same spans and logs
  when TELEMETRY_EXPORTER is `console` or `file:<path>` (JSON, one span or log record a line).
- `RequestTelemetryMiddleware` (pure ASGI, outermost) makes one SERVER span per request, named
  by the route template (`GET /api/TodoItem/{id}`, never the id) once the router has matched.

What never lands in telemetry: request headers (the client certificate, the subscription key),
the query string, bodies (item content), the health key (any path with `/health` in it is
reported as the template `/health/{key}`) and exception messages (type and stack only). Logs
are exported from the `app` logger tree only, not from the servers' access logs.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import IO

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.contract import HEALTH_PATH, HEALTH_PREFIX
from app.settings import CONSOLE_EXPORTER, FILE_EXPORTER_PREFIX, Settings, TelemetrySettings

SERVICE_NAME = "todo-api"
LOGGER_NAME = "app"  # exported logs: this logger and its children only
# The distro's instrumentations: only the Azure SDK one (the store's calls as dependencies).
# The rest would double-count the store's HTTP calls (requests, urllib3) or do nothing here.
INSTRUMENTATION_OPTIONS = {
    "azure_sdk": {"enabled": True},
    **{
        name: {"enabled": False}
        for name in (
            "django", "fastapi", "flask", "httpx", "httpx2", "psycopg2", "requests", "urllib",
            "urllib3",
        )
    },
}
# Resource detectors: App Service only. The distro's default adds the Azure VM detector, which
# asks the instance metadata endpoint (169.254.169.254) over the network at every start.
RESOURCE_DETECTORS_ENV = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
RESOURCE_DETECTORS = "azure_app_service"

_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}
_PROPAGATOR = TraceContextTextMapPropagator()


def reported_path(path: str) -> str:
    """The path as telemetry may show it: anything near the health check is its template."""
    return HEALTH_PATH if HEALTH_PREFIX in path.lower() else path


class RequestTelemetryMiddleware:
    """One SERVER span per HTTP request, continuing the caller's W3C trace (API Management's).

    Attributes (semantic conventions the Azure Monitor exporter maps to a request): method,
    scheme, url.full and url.path without query, http.route, response status code. 5xx marks
    the span (the request) failed; 4xx are the caller's and stay successful.
    """

    def __init__(self, app: ASGIApp, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.app = app
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        span = self.tracer.start_span(method, _parent(scope), SpanKind.SERVER)
        if not span.is_recording():  # not sampled: no attributes, no clock reads beyond start
            with trace.use_span(span, end_on_exit=True):
                await self.app(scope, receive, send)
            return
        _request_attributes(span, scope)
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with trace.use_span(span, end_on_exit=True, record_exception=False,
                            set_status_on_exception=False):
            try:
                await self.app(scope, receive, send_recording)
            except Exception as error:
                _record_exception(span, error)
                raise
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def _parent(scope: Scope):
    carrier = {
        _TRACE_HEADERS[name]: value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _TRACE_HEADERS
    }
    return _PROPAGATOR.extract(carrier) if carrier else None


def _request_attributes(span: trace.Span, scope: Scope) -> None:
    scheme = scope.get("scheme", "http")
    path = reported_path(scope["path"])
    host = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"host"), "")
    span.set_attributes(
        {
            "http.request.method": scope["method"],
            "url.scheme": scheme,
            "url.path": path,
            "url.full": f"{scheme}://{host}{path}" if host else path,
        }
    )


def _record_exception(span: trace.Span, error: Exception) -> None:
    """Type and stack only: an exception's message may quote request data."""
    name = type(error).__qualname__
    stack = "".join(traceback.format_tb(error.__traceback__)) + name
    span.add_event(
        "exception",
        {"exception.type": name, "exception.message": name, "exception.stacktrace": stack},
    )
    span.set_status(Status(StatusCode.ERROR, name))


def _resource_attributes(settings: Settings) -> dict[str, str]:
    """The region's site name is the cloud role instance (Application Insights'
    cloud_RoleInstance) of every span and log record."""
    return {"service.name": SERVICE_NAME, "service.instance.id": settings.site_name}


def _local_output(exporter: str) -> IO[str]:
    if exporter == CONSOLE_EXPORTER:
        return sys.stdout
    return open(exporter.removeprefix(FILE_EXPORTER_PREFIX), "a", buffering=1, encoding="utf-8")


def _local_processors(telemetry: TelemetrySettings) -> tuple[list, list]:
    """(span processors, log record processors) writing JSON lines to the console or a file."""
    if telemetry.exporter is None:
        return [], []
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    out = _local_output(telemetry.exporter)
    spans = ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
    logs = ConsoleLogRecordExporter(
        out=out, formatter=lambda record: record.to_json(indent=None) + "\n"
    )
    return [BatchSpanProcessor(spans)], [BatchLogRecordProcessor(logs)]


def configure_telemetry(settings: Settings) -> None:
    """Set the global tracer and logger providers (call once per process, before serving)."""
    telemetry = settings.telemetry
    os.environ.setdefault(RESOURCE_DETECTORS_ENV, RESOURCE_DETECTORS)
    span_processors, log_processors = _local_processors(telemetry)
    if telemetry.connection_string is not None:
        _configure_azure_monitor(settings, span_processors, log_processors)
    else:
        _configure_local_only(settings, span_processors, log_processors)


def _configure_azure_monitor(settings: Settings, span_processors, log_processors) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    configure_azure_monitor(
        connection_string=settings.telemetry.connection_string,
        sampling_ratio=settings.telemetry.sampling_ratio,
        resource=Resource.create(_resource_attributes(settings)),
        logger_name=LOGGER_NAME,
        instrumentation_options=INSTRUMENTATION_OPTIONS,
        enable_live_metrics=False,
        enable_performance_counters=False,
        span_processors=span_processors,
        log_record_processors=log_processors,
    )


def _configure_local_only(settings: Settings, span_processors, log_processors) -> None:
    """The distro's pipeline minus its exporters: same sampler, resource, logger, Azure SDK
    tracing; only the local processors export."""
    import logging

    from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create(_resource_attributes(settings))
    tracer_provider = TracerProvider(
        sampler=ApplicationInsightsSampler(sampling_ratio=settings.telemetry.sampling_ratio),
        resource=resource,
    )
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    for processor in log_processors:
        logger_provider.add_log_record_processor(processor)
    set_logger_provider(logger_provider)
    logging.getLogger(LOGGER_NAME).addHandler(LoggingHandler(logger_provider=logger_provider))
    _enable_azure_sdk_tracing()


def _enable_azure_sdk_tracing() -> None:
    """What the distro's `azure_sdk` option does: Azure SDK clients (the table store) report
    each call as a dependency span under the current request."""
    from azure.core.settings import settings as azure_settings
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

    azure_settings.tracing_implementation = OpenTelemetrySpan

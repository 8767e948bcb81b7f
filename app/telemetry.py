"""OpenTelemetry for the service: request spans, store dependencies, correlated logs.

Imported only when telemetry is on (`Settings.telemetry.enabled`): with it off the app never
imports OpenTelemetry or the Azure Monitor distro, so it costs nothing.

- `configure_telemetry(settings)` (app/main.py, once per worker process) sets up the global
  providers: Microsoft's distro (`azure-monitor-opentelemetry`) when
  APPLICATIONINSIGHTS_CONNECTION_STRING is set (logs, metrics, the Azure SDK instrumentation;
  spans through its AzureMonitorTraceExporter), plus a local copy of the same spans and logs
  when TELEMETRY_EXPORTER is `console` or `file:<path>` (JSON, one span or log record a line).
- `RequestTelemetryMiddleware` (pure ASGI, outermost) decides per request whether it is traced
  (`RequestSampler`) and makes one SERVER span per traced request, named by method and
  `app.middleware.request_path`: the route template (`GET /api/TodoItem/{id}`, never the id),
  also for a request a gate refused before routing; `/health/{key}` for anything that decodes
  to a health path; `/{unmatched}` for any other path. The same goes into url.path and url.full.
  Unknown methods are `_OTHER` (OpenTelemetry's semantic conventions).

What never lands in telemetry: request headers (the client certificate, the subscription key,
the bearer token), the query string, bodies (item content), any part of the path itself (so no
health key), and exception messages (type and stack only). Logs are exported from the `app`
logger tree only, not from the servers' access logs.

Success: the Azure Monitor exporter sets a request's `success` to false for every 4xx response
and for a span with status ERROR (which this middleware sets for 5xx), true otherwise
(azure-monitor-opentelemetry-exporter, export/trace/_exporter.py `_convert_span_to_envelope`,
and `_utils._is_status_code_success(code, is_trace=True)`). It has no hook to change that, so
Application Insights counts 401, 403 and 404 as failed requests; docs/operations.md says so.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.middleware import request_path
from app.settings import CONSOLE_EXPORTER, FILE_EXPORTER_PREFIX, Settings, TelemetrySettings

SERVICE_NAME = "todo-api"
LOGGER_NAME = "app"  # exported logs: this logger and its children only
# The distro's instrumentations: only the Azure SDK one. Its tracing hook sits in the distro's
# tracing setup, which the app replaces; `_enable_azure_sdk_tracing` turns on azure-core's
# native tracing instead. The rest would double-count the store's HTTP calls (requests,
# urllib3) or do nothing here.
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
TRACES_EXPORTER_ENV = "OTEL_TRACES_EXPORTER"

# The span attribute the Azure Monitor exporter reads as the envelope's sample rate (percent).
SAMPLE_RATE_ATTRIBUTE = "_MS.sampleRate"
_PROPAGATOR = TraceContextTextMapPropagator()
# http.request.method: these, or `_OTHER` (a span name must not be whatever a client sent).
_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


class RequestSampler:
    """Which requests are traced, decided once per request for a few hundred nanoseconds.

    A fixed ratio (TELEMETRY_SAMPLING_RATIO), or by default at most `per_second` traced requests
    per second and process: each second's ratio is the limit over the previous second's request
    count. Every traced request carries its ratio as `_MS.sampleRate` (percent), from which
    Application Insights counts how many requests it stands for (itemCount), so sums stay right.
    The distro's own samplers hash every request's trace id in Python (~20-30 us per request,
    measured in process: as much as the app's own work on a small request; docs/operations.md).
    """

    def __init__(self, ratio: float | None, per_second: float, clock=time.monotonic) -> None:
        self.fixed = ratio
        self.per_second = per_second
        self._clock = clock
        self._second = int(clock())
        self._requests = 0
        self._traced = 0
        self._ratio = 1.0 if ratio is None else ratio

    def sample(self) -> float | None:
        """The ratio this request is traced at, or None when it is not traced."""
        if self.fixed is None:
            self._adapt()
        if self._ratio <= 0.0 or random.random() >= self._ratio:
            return None
        self._traced += 1
        return self._ratio

    def _adapt(self) -> None:
        second = int(self._clock())
        if second != self._second:
            seconds = second - self._second
            self._ratio = min(1.0, self.per_second * seconds / max(self._requests, 1))
            self._second, self._requests, self._traced = second, 0, 0
        self._requests += 1
        if self._traced >= self.per_second:  # a burst inside the second: the limit holds
            self._ratio = 0.0


class RequestTelemetryMiddleware:
    """One SERVER span per sampled HTTP request, continuing the caller's W3C trace (API
    Management's). An untraced request costs one sampling decision and nothing else: the
    store's spans inside it are dropped (they have no traced parent) and its log records carry
    no trace id (logs are correlated for traced requests).

    Attributes (semantic conventions the Azure Monitor exporter maps to a request): method,
    scheme, url.full and url.path (`request_path`, no query), http.route (when a route matched),
    response status code. 5xx sets the span's status to ERROR; 4xx leave it unset (the caller's,
    per the conventions), but the exporter still sends them with `success` false (above).
    """

    def __init__(
        self,
        app: ASGIApp,
        sampler: RequestSampler,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.app = app
        self.sampler = sampler
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ratio = self.sampler.sample()
        if ratio is None:  # not traced: nothing else to do (spans started inside are dropped)
            await self.app(scope, receive, send)
            return
        traceparent = _traceparent(scope)
        parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        await self._traced(scope, receive, send, parent, ratio)

    async def _traced(self, scope, receive, send, parent, ratio: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        span = self.tracer.start_span(
            method, parent, SpanKind.SERVER, {SAMPLE_RATE_ATTRIBUTE: ratio * 100.0}
        )
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
                path = request_path(scope)
                span.update_name(f"{method} {path}")
                _request_attributes(span, scope, method, path)
                if getattr(scope.get("route"), "path", None):
                    span.set_attribute("http.route", path)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def in_traced_request() -> bool:
    """True inside a request the middleware traces (the store then traces its SDK calls)."""
    return trace.get_current_span().is_recording()


class FollowTheRequestSampler(Sampler):
    """The tracer provider's sampler: the middleware decides for each request and starts its
    span with a sample rate; a span inside a traced request follows it (and carries its rate);
    any other span (inside an untraced request, or outside a request) is dropped."""

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                      links=None, trace_state=None) -> SamplingResult:
        parent = trace.get_current_span(parent_context)
        span_context = parent.get_span_context()
        if span_context.is_valid and not span_context.is_remote:
            if not span_context.trace_flags.sampled:
                return SamplingResult(Decision.DROP)
            rate = getattr(parent, "attributes", {}).get(SAMPLE_RATE_ATTRIBUTE)
            if rate is not None:
                attributes = {**(attributes or {}), SAMPLE_RATE_ATTRIBUTE: rate}
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        if attributes and SAMPLE_RATE_ATTRIBUTE in attributes:  # a request the middleware traces
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "FollowTheRequestSampler"


def _traceparent(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"traceparent":
            return value.decode("latin-1")
    return None


def _request_attributes(span: trace.Span, scope: Scope, method: str, path: str) -> None:
    scheme = scope.get("scheme", "http")
    host = next((v.decode("latin-1") for n, v in scope["headers"] if n == b"host"), "")
    span.set_attributes(
        {
            "http.request.method": method,
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


def request_sampler(telemetry: TelemetrySettings) -> RequestSampler:
    return RequestSampler(telemetry.sampling_ratio, telemetry.traces_per_second)


def configure_telemetry(settings: Settings) -> None:
    """Set the global tracer and logger providers (call once per process, before serving).

    With a connection string: the distro (`configure_azure_monitor`) sets up logs, metrics and
    its instrumentations; the tracer provider is ours only so that the sampling decision is the
    middleware's (RequestSampler), and it exports through the distro's AzureMonitorTraceExporter.
    Without one: the same providers, exporting to the local file or console only.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    telemetry = settings.telemetry
    os.environ.setdefault(RESOURCE_DETECTORS_ENV, RESOURCE_DETECTORS)
    resource = Resource.create(_resource_attributes(settings))
    span_processors, log_processors = _local_processors(telemetry)
    tracer_provider = TracerProvider(sampler=FollowTheRequestSampler(), resource=resource)
    if telemetry.connection_string is not None:
        from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter

        exporter = AzureMonitorTraceExporter(connection_string=telemetry.connection_string)
        span_processors.append(BatchSpanProcessor(exporter))
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    trace.set_tracer_provider(tracer_provider)
    if telemetry.connection_string is not None:
        _configure_azure_monitor(settings, resource, log_processors)
    else:
        _configure_local_logs(resource, log_processors)
    _enable_azure_sdk_tracing()


def _configure_azure_monitor(settings: Settings, resource, log_processors) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    # Tracing is set up above (with the distro's trace exporter). The distro takes "tracing
    # off" only from OTEL_TRACES_EXPORTER=none (it overrides its disable_tracing argument);
    # without it, it builds a second tracer provider with its own exporter threads.
    os.environ[TRACES_EXPORTER_ENV] = "none"
    configure_azure_monitor(
        connection_string=settings.telemetry.connection_string,
        resource=resource,
        logger_name=LOGGER_NAME,
        instrumentation_options=INSTRUMENTATION_OPTIONS,
        enable_live_metrics=False,
        enable_performance_counters=False,
        log_record_processors=log_processors,
    )


def _configure_local_logs(resource, log_processors) -> None:
    """What the distro does for logs, with the local processors as the only exporters."""
    import logging

    from opentelemetry._logs import set_logger_provider
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider

    logger_provider = LoggerProvider(resource=resource)
    for processor in log_processors:
        logger_provider.add_log_record_processor(processor)
    set_logger_provider(logger_provider)
    logging.getLogger(LOGGER_NAME).addHandler(LoggingHandler(logger_provider=logger_provider))


def _enable_azure_sdk_tracing() -> None:
    """Azure SDK clients (the table store) report each call as a span under the current
    request, through azure-core's native OpenTelemetry tracing (`tracing_enabled`). The distro's
    `azure_sdk` option sets the older plugin instead (`tracing_implementation =
    OpenTelemetrySpan`), which builds a tracer and a span wrapper for every call, traced request
    or not: ~0.4 ms of CPU per store call, measured; the native path reuses one tracer."""
    from azure.core.settings import settings as azure_settings

    azure_settings.tracing_enabled = True

"""The API contract's fixed facts: paths, header names and request limits, and the site name a
deployment slot reports (defined once)."""

TODO_PATH = "/api/TodoItem"
TODO_ITEM_PATH = "/api/TodoItem/{id}"
HEALTH_PATH = "/health/{key}"
HEALTH_PREFIX = "/health"
OPENAPI_PATH = "/swagger/v1/swagger.json"
SWAGGER_UI_PATH = "/"
SWAGGER_ASSETS_PATH = "/swagger-ui"
SWAGGER_INITIALIZER_PATH = "/swagger-ui-init.js"

SITE_NAME_HEADER = "APP-SERVICE-SITE-NAME"
# App Service gives every slot of a web app the app's name (WEBSITE_SITE_NAME) and the slot's
# own (WEBSITE_SLOT_NAME: "Production", or e.g. "staging"). The production slot reports the
# app's name; another slot <app>-<slot>, its default host name's label, so a caller (the release
# driver's smoke test) sees which slot answered.
PRODUCTION_SLOT = "production"

SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"
# The header App Service's front end sets to the caller's certificate (base64 DER); the app's
# default CLIENT_CERT_HEADER.
CLIENT_CERT_HEADER = "X-ARR-ClientCert"

# What the deployment tells the app (app/settings.py reads them): STORE is one of these, and
# the table's default name.
MEMORY_STORE = "memory"
TABLE_STORE = "table"
DEFAULT_TABLE_NAME = "TodoItems"

MAX_BODY_BYTES = 16 * 1024
MAX_NAME_LENGTH = 200
# A name is blank when it holds only whitespace as Python or JSON Schema (ECMA-262) count it; the
# same explicit class serves the app's check and the OpenAPI pattern, so the two always agree.
NON_BLANK_PATTERN = r"[^\t\n\v\f\r \u001c-\u001f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
JSON_MEDIA_TYPE = "application/json"
PROBLEM_MEDIA_TYPE = "application/problem+json"
HEALTH_OK_TEXT = "HealthCheck OK"
CERTIFICATE_REJECTED = "The client certificate was rejected."

# Who is calling (app/access_tokens.py): an OAuth 2.0 bearer token (RFC 6750) from Microsoft Entra
# ID. AUTH_MODE is one of these. Reads (GET, HEAD) need READ_PERMISSION, every other method
# WRITE_PERMISSION, as an app role (`roles` claim, applications) or a delegated scope (`scp`
# claim, users); the same names are the OpenAPI document's OAuth 2.0 scopes.
AUTH_NONE = "none"
AUTH_ENTRA = "entra"
READ_PERMISSION = "Todo.Read"
WRITE_PERMISSION = "Todo.Write"
AUTHORIZATION_HEADER = "Authorization"
BEARER_REALM = "todo-api"  # the realm of every WWW-Authenticate challenge
# A larger Authorization header is refused (401) before it is parsed or hashed: Entra access
# tokens for this API are 1-3 KB (it emits no group claims); 8 KiB leaves room and bounds work.
MAX_AUTHORIZATION_BYTES = 8 * 1024

# Retry-safe writes (IETF draft-ietf-httpapi-idempotency-key-header; app/idempotency.py). A key is
# 1-255 visible ASCII characters other than " and \, sent bare (as most clients do) or as the
# draft's structured-field string in double quotes; both forms name the same key.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed"  # "true" on a replayed answer (Stripe's name)
IDEMPOTENCY_KEY_METHODS = ("POST", "PUT", "DELETE")
MAX_IDEMPOTENCY_KEY_LENGTH = 255
IDEMPOTENCY_KEY_PATTERN = (
    rf"^(?:[!#-\[\]-~]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}"
    rf'|"[!#-\[\]-~]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}")$'
)
DEFAULT_IDEMPOTENCY_KEY_EXPIRY_SECONDS = 24 * 60 * 60


def slot_site_name(site: str, slot: str | None) -> str:
    """The site name the `slot` of web app `site` reports in SITE_NAME_HEADER."""
    if slot is None or slot.lower() == PRODUCTION_SLOT:
        return site
    return f"{site}-{slot.lower()}"

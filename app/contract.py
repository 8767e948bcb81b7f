"""The API contract's fixed facts: paths, header names and request limits (defined once)."""

TODO_PATH = "/api/TodoItem"
TODO_ITEM_PATH = "/api/TodoItem/{id}"
HEALTH_PATH = "/health/{key}"
HEALTH_PREFIX = "/health"
OPENAPI_PATH = "/swagger/v1/swagger.json"
SWAGGER_UI_PATH = "/"
SWAGGER_ASSETS_PATH = "/swagger-ui"

SITE_NAME_HEADER = "APP-SERVICE-SITE-NAME"
SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"

MAX_BODY_BYTES = 16 * 1024
MAX_NAME_LENGTH = 200
JSON_MEDIA_TYPE = "application/json"
PROBLEM_MEDIA_TYPE = "application/problem+json"
HEALTH_OK_TEXT = "HealthCheck OK"
CERTIFICATE_REJECTED = "The client certificate was rejected."

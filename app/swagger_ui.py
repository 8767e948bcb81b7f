"""Swagger UI at / (development only), served from the swagger-ui-bundle package's assets."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from app.contract import (
    OPENAPI_PATH,
    SWAGGER_ASSETS_PATH,
    SWAGGER_INITIALIZER_PATH,
    SWAGGER_UI_PATH,
)

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>TodoItem API</title>
<link rel="stylesheet" href="{SWAGGER_ASSETS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER_ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{SWAGGER_ASSETS_PATH}/swagger-ui-standalone-preset.js"></script>
<script src="{SWAGGER_INITIALIZER_PATH}"></script>
</body>
</html>
"""

_INITIALIZER = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH}",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  }});
}};
"""


async def page(request: Request) -> Response:
    return HTMLResponse(_PAGE)


async def initializer(request: Request) -> Response:
    return Response(_INITIALIZER, media_type="text/javascript")


def swagger_ui_routes() -> list[BaseRoute]:
    return [
        Route(SWAGGER_UI_PATH, page, methods=["GET"]),
        Route(SWAGGER_INITIALIZER_PATH, initializer, methods=["GET"]),
        Mount(SWAGGER_ASSETS_PATH, app=StaticFiles(directory=swagger_ui_path)),
    ]

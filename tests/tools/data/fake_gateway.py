"""A stand-in for API Management in the smoke tests: only the operations of app/openapi.json
are published (404 otherwise, as APIM answers), key check, then mTLS-style forwarding.

Environment: BACKEND_URL, API_PATH, SUBSCRIPTION_KEY, CLIENT_CERT_B64 (base64 DER, sent as
X-ARR-ClientCert like the App Service front end does), CHECK_KEY ("on" | "off": "off" is the
misconfigured gateway the smoke checks must catch).
"""

import json
import os
import re
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BACKEND = os.environ["BACKEND_URL"]
PREFIX = "/" + os.environ["API_PATH"].strip("/")
KEY = os.environ["SUBSCRIPTION_KEY"]
CERT = os.environ["CLIENT_CERT_B64"]
CHECK_KEY = os.environ.get("CHECK_KEY", "on") == "on"
FORWARDED = ("content-type", "app-service-site-name")
OPENAPI = json.loads((Path(__file__).resolve().parents[3] / "app" / "openapi.json").read_text())
PUBLISHED = [
    (method.upper(), re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"))
    for path, operations in OPENAPI["paths"].items() for method in operations
]


async def forward(request):
    if CHECK_KEY and request.headers.get("Ocp-Apim-Subscription-Key") != KEY:
        return JSONResponse({"statusCode": 401, "message": "Access denied"}, status_code=401)
    path = request.url.path
    operation = path[len(PREFIX):] if path.startswith(PREFIX) else ""
    if not any(m == request.method and p.match(operation) for m, p in PUBLISHED):
        return JSONResponse({"statusCode": 404, "message": "Resource not found"}, status_code=404)
    headers = {"X-ARR-ClientCert": CERT, "Content-Type": request.headers.get("content-type", "")}
    async with httpx.AsyncClient(timeout=30) as client:  # as the smoke checks wait: 30 s
        upstream = await client.request(request.method, BACKEND + operation,
                                        content=await request.body(), headers=headers)
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED}
    return Response(upstream.content, upstream.status_code, headers=headers)


app = Starlette(routes=[Route("/{path:path}", forward,
                               methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])

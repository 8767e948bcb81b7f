"""A stand-in for API Management in the smoke tests: key check, then mTLS-style forwarding.

Environment: BACKEND_URL, API_PATH, SUBSCRIPTION_KEY, CLIENT_CERT_B64 (base64 DER, sent as
X-ARR-ClientCert like the App Service front end does), CHECK_KEY ("on" | "off": "off" is the
misconfigured gateway the smoke checks must catch).
"""

import os

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


async def forward(request):
    if CHECK_KEY and request.headers.get("Ocp-Apim-Subscription-Key") != KEY:
        return JSONResponse({"statusCode": 401, "message": "Access denied"}, status_code=401)
    path = request.url.path
    if not path.startswith(PREFIX):
        return JSONResponse({"statusCode": 404}, status_code=404)
    async with httpx.AsyncClient() as client:
        upstream = await client.get(BACKEND + path[len(PREFIX):],
                                    headers={"X-ARR-ClientCert": CERT})
    headers = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED}
    return Response(upstream.content, upstream.status_code, headers=headers)


app = Starlette(routes=[Route("/{path:path}", forward)])

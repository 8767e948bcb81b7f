"""The Instance Metadata Service of a fake Azure Load Testing engine (fakes/load_testing.py
starts one per test run, beside its engines, and stops it with them): what a script on an
engine asks for its managed identity's token (Microsoft Learn, "Load test secured endpoints",
"Authenticate with a managed identity"; loadtests/locust_support.py asks).

It knows only the identities the engines were given: the load test resource's engine identity,
and only when the test's `referenceIdentities` names it (kind Engine). Like IMDS:
`GET /metadata/identity/oauth2/token?api-version=...&resource=...&client_id=...` with header
`Metadata: true`; 400 without the header or the api-version, 400 `invalid_request: Identity not
found` for an identity the engine does not have, 400 `invalid_resource` for another resource than
the API's; otherwise the token JSON. The token is what fake `az account get-access-token` mints
for that identity (fakes/access_token.py: signed by the rehearsal's issuer, `roles` as the
job's synthesized stack assigns them to the identity, here a user-assigned identity of the stack
found by its name). Each answer is a line in LOG (status and client id, never the token).

Run with the repository's .venv Python (PyJWT):
    python imds.py <scenario auth JSON> <identities JSON> <stack file> <port file> <log file>
identities: {client id: {"principal_id": ..., "name": <the identity's resource name>}}.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from access_token import main as mint

TOKEN_PATH = "/metadata/identity/oauth2/token"
LIFETIME = 3600


def answer_for(auth: dict, identities: dict, stack_file: Path, path: str,
               metadata: str | None) -> tuple[int, dict, str]:
    """(status, body, what the log says) for one request."""
    url = urlsplit(path)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    client_id = query.get("client_id", "")
    if url.path != TOKEN_PATH:
        return 404, {"error": "not_found"}, "404"
    if metadata != "true" or "api-version" not in query:
        return 400, {"error": "invalid_request",
                     "error_description": "Required metadata header not specified"}, "400 header"
    if client_id not in identities:
        return 400, {"error": "invalid_request", "error_description": "Identity not found"}, \
            f"400 identity {client_id or '-'}"
    resource = query.get("resource", "")
    if resource != auth["audience"]:
        return 400, {"error": "invalid_resource",
                     "error_description": f"AADSTS500011: {resource} not found"}, "400 resource"
    identity = identities[client_id]
    token = mint(auth, client_id, identity["principal_id"], resource, stack_file,
                 identity_name=identity["name"])
    expires_on = int(time.time()) + LIFETIME
    return 200, {"access_token": token, "expires_on": str(expires_on),
                 "expires_in": str(LIFETIME), "resource": resource, "token_type": "Bearer",
                 "client_id": client_id}, f"200 {client_id}"


def serve(auth: dict, identities: dict, stack_file: Path, port_file: Path, log_file: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, line = answer_for(auth, identities, stack_file, self.path,
                                            self.headers.get("Metadata"))
            with log_file.open("a") as log:
                log.write(line + "\n")
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args) -> None:  # quiet: LOG says what was answered
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    partial = port_file.with_suffix(".partial")
    partial.write_text(str(server.server_address[1]))
    os.replace(partial, port_file)  # whole or absent: the fake ALT waits for it
    server.serve_forever()


if __name__ == "__main__":
    auth_json, identities_json, stack, port, log = sys.argv[1:6]
    serve(json.loads(auth_json), json.loads(identities_json), Path(stack), Path(port), Path(log))

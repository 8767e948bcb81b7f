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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository: loadtests
from access_token import main as mint

from loadtests.token_issuer import IMDS_TOKEN_PATH, imds_answer


def answer_for(auth: dict, identities: dict, stack_file: Path, path: str,
               metadata: str | None) -> tuple[int, dict, str]:
    """(status, body, what the log says) for one request: IMDS's answer as the local topology's
    stand-in gives it (loadtests/token_issuer.py), for the identities the engines hold."""
    url = urlsplit(path)
    if url.path != IMDS_TOKEN_PATH:
        return 404, {"error": "not_found"}, "404"
    tokens = {
        client_id.lower(): (lambda resource, now, client_id=client_id, held=held: mint(
            auth, client_id, held["principal_id"], resource, stack_file,
            identity_name=held["name"]))
        for client_id, held in identities.items()
    }
    status, body = imds_answer(url.query, metadata, tokens, (auth["audience"],),
                               auth["tenant_id"])
    said = body["client_id"] if status == 200 else f"{body['error']}: {body['error_description']}"
    return status, body, f"{status} {said}"


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

"""Create or update (in place) the pull-request comment that starts with a hidden marker.

    python -m tools.delivery.pr_comment --pr 12 --body-file comment.md [--label-file label.txt]

The marker is the body's first line (`<!-- todo-api-plan:<stack> -->`, see tools.delivery.plan_comment).
Only comments written by github-actions[bot] are ever edited.

`--label-file` holds one label `plan/<stack>: <kind>` (tools.delivery.plan_comment --label-out): it is
put on the pull request and the stack's other `plan/<stack>: ...` labels are taken off, so the
labels always tell the latest plan of each stack (filter pull requests by `destroys`).
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from pathlib import Path

from tools.cli import CliError, run_cli
from tools.delivery.github_api import GitHubApi, find_marked

MARKER = re.compile(r"<!-- [\w.:-]+ -->")


def marker_of(body: str) -> str:
    first = body.split("\n", 1)[0]
    if not MARKER.fullmatch(first):
        raise CliError("comment body must start with a hidden marker line like <!-- name:stack -->")
    return first


def upsert_comment(api: GitHubApi, pr: int, body: str) -> tuple[str, int]:
    """("created" | "updated", comment id)."""
    existing = find_marked(api.list(f"/issues/{pr}/comments"), marker_of(body))
    if existing:
        api.request("PATCH", f"/issues/comments/{existing['id']}", {"body": body})
        return "updated", existing["id"]
    created = api.request("POST", f"/issues/{pr}/comments", {"body": body})
    return "created", created["id"]


LABEL = re.compile(r"plan/[\w.-]+: [a-z ]+")


def sync_label(api: GitHubApi, pr: int, wanted: str) -> tuple[list[str], list[str]]:
    """Put `wanted` on the PR, take off the same stack's other plan labels: (added, removed)."""
    if not LABEL.fullmatch(wanted):
        raise CliError(f"label must look like 'plan/<stack>: <kind>', got {wanted!r:.80}")
    prefix = wanted.split(": ", 1)[0] + ": "
    current = [item["name"] for item in api.list(f"/issues/{pr}/labels")]
    removed = [name for name in current if name.startswith(prefix) and name != wanted]
    for name in removed:
        api.request("DELETE", f"/issues/{pr}/labels/{urllib.parse.quote(name, safe='')}")
    added = [] if wanted in current else [wanted]
    if added:
        api.request("POST", f"/issues/{pr}/labels", {"labels": added})
    return added, removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pr", type=int, required=True, help="pull request number")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--label-file", type=Path, help="the plan label to put on the PR")
    args = parser.parse_args(argv)
    body = _read(args.body_file)
    wanted = _read(args.label_file).strip() if args.label_file else None
    api = GitHubApi.from_environment()
    action, comment_id = upsert_comment(api, args.pr, body)
    print(f"{action} comment {comment_id} on #{args.pr}")
    if wanted:
        added, removed = sync_label(api, args.pr, wanted)
        print(f"label {wanted!r}: {'added' if added else 'kept'}"
              + (f"; removed {', '.join(map(repr, removed))}" if removed else ""))
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Create or update (in place) the pull-request comment that starts with a hidden marker.

    python -m tools.pr_comment --pr 12 --body-file comment.md

The marker is the body's first line (`<!-- todo-api-plan:<stack> -->`, see tools.plan_comment).
Only comments written by github-actions[bot] are ever edited.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tools.cli import CliError, run_cli
from tools.github_api import GitHubApi, find_marked

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pr", type=int, required=True, help="pull request number")
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        body = args.body_file.read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {args.body_file}: {error.strerror}") from None
    action, comment_id = upsert_comment(GitHubApi.from_environment(), args.pr, body)
    print(f"{action} comment {comment_id} on #{args.pr}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

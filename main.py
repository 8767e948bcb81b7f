"""cdktf app: `python main.py` (or `cdktf synth`) writes cdktf.out/ with one stack per environment.

    python main.py [--set KEY=VALUE ...] [--outdir DIR] [--openapi FILE]

`--set gateway.topology=dual` overrides a config value in every environment. Bad
configuration or a policy violation prints one line per problem and exits 1, writing nothing.
"""

import argparse
import os
import sys
from pathlib import Path

from stacks.config import ConfigError, load_environments, parse_overrides
from stacks.openapi import OPENAPI_PATH, read_openapi


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthesize the TodoItem API stacks.")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value in every environment, e.g. gateway.sku=Premium_1",
    )
    parser.add_argument(
        "--outdir", type=Path, default=Path(os.environ.get("CDKTF_OUTDIR", "cdktf.out"))
    )
    parser.add_argument(
        "--openapi",
        type=Path,
        default=OPENAPI_PATH,
        help="OpenAPI document API Management imports (default app/openapi.json)",
    )
    args = parser.parse_args(argv)
    try:
        configs = load_environments(parse_overrides(args.set))
        openapi_json = read_openapi(args.openapi)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from stacks.synth import SynthError, synthesize

    try:
        stacks = synthesize(configs, args.outdir, openapi_json)
    except SynthError as error:
        print(f"error: synth stopped:\n{error}", file=sys.stderr)
        return 1
    for stack in stacks:
        print(f"wrote {os.path.relpath(stack)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""cdktf app: `python main.py` (or `cdktf synth`) writes cdktf.out/ with one stack per environment
and the bootstrap stack (todo-api-bootstrap, config/bootstrap.toml; deployed once, by hand).

    python main.py [--set KEY=VALUE ...] [--outdir DIR] [--openapi FILE]

`--set gateway.topology=dual` overrides a config value in every environment;
`--set bootstrap.repository=owner/name` one of the bootstrap stack's. Bad
configuration or a policy violation prints one line per problem and exits 1, writing nothing.
"""

import argparse
import os
import sys
from pathlib import Path

from stacks.bootstrap_config import load_bootstrap
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
        overrides = parse_overrides(args.set)
        bootstrap = load_bootstrap(overrides=overrides)
        configs = load_environments(
            {k: v for k, v in overrides.items() if not k.startswith("bootstrap.")})
        openapi_json = read_openapi(args.openapi)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from stacks.synth import SynthError, synthesize

    try:
        stacks = synthesize(configs, args.outdir, openapi_json, bootstrap)
    except SynthError as error:
        print(f"error: synth stopped:\n{error}", file=sys.stderr)
        return 1
    for stack in stacks:
        print(f"wrote {os.path.relpath(stack)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

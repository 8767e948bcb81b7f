"""Synth benchmark: `python main.py` with the bare-parent provider import (stacks/bindings.py)
against the plain import path, each in a fresh process, side by side.

    python -m benchmarks.synth [--runs N]

Prints each run's wall time, the best of each path and the ratio, then checks that both paths
wrote byte-identical cdktf.out trees (exit 1 if not). Both runs read the same snapshot of
app/openapi.json.
"""

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from stacks.bindings import PLAIN_IMPORT_ENV

REPO = Path(__file__).resolve().parent.parent
PATHS = {"fast": "0", "plain": "1"}


@dataclass(frozen=True)
class SynthRun:
    path: str
    seconds: float
    outdir: Path
    stdout: str
    stderr: str


def run_synth(path: str, outdir: Path, openapi: Path) -> SynthRun:
    """`python main.py` in a fresh process, on the given import path."""
    env = {**os.environ, PLAIN_IMPORT_ENV: PATHS[path]}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "main.py", "--outdir", str(outdir), "--openapi", str(openapi)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{path} synth failed: {result.stderr.strip()}")
    return SynthRun(path, seconds, outdir, result.stdout, result.stderr)


def differences(left: Path, right: Path) -> list[str]:
    """Relative paths that are missing on one side or differ in any byte."""
    files = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    files |= {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    return sorted(
        str(f)
        for f in files
        if not (
            (left / f).is_file()
            and (right / f).is_file()
            and filecmp.cmp(left / f, right / f, shallow=False)
        )
    )


def snapshot_openapi(workdir: Path) -> Path:
    copy = workdir / "openapi.json"
    shutil.copyfile(REPO / "app" / "openapi.json", copy)
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs per path (best is compared)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        workdir = Path(tmp)
        openapi = snapshot_openapi(workdir)
        best: dict[str, SynthRun] = {}
        for i in range(args.runs):
            for path in PATHS:  # alternate, so machine noise hits both alike
                run = run_synth(path, workdir / f"{path}-{i}", openapi)
                print(f"run {i + 1} {path:5s} {run.seconds:6.2f} s", flush=True)
                if path not in best or run.seconds < best[path].seconds:
                    best[path] = run
        fast, plain = best["fast"], best["plain"]
        print(f"python main.py, default configuration (2 stacks), best of {args.runs}:")
        print(f"  plain import path   {plain.seconds:6.2f} s")
        print(f"  bare-parent import  {fast.seconds:6.2f} s")
        print(f"  ratio plain/fast    {plain.seconds / fast.seconds:6.2f}x")
        diff = differences(fast.outdir, plain.outdir)
        if diff:
            print(f"OUTPUT DIFFERS: {', '.join(diff)}")
            return 1
        print("output: byte-identical (cdktf.out trees compared file by file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

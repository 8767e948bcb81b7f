#!/usr/bin/env bash
# Install the Debian packages the local stand-in and the benchmarks need, once.
# Usage: tools/ensure-debian-packages.sh COMMAND=PACKAGE ...  (e.g. haproxy=haproxy wrk=wrk)
# Idempotent: does nothing when every command is already on PATH.
set -euo pipefail
missing=()
for pair in "$@"; do
  cmd=${pair%%=*}
  pkg=${pair#*=}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0
if [[ $(id -u) -ne 0 ]]; then
  sudo=sudo
else
  sudo=
fi
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL: DATABASE_URL and TEST_POSTGRES_URL point at it.
# The cluster lives in a temporary folder and is stopped and removed however the command ends.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/voucher-ledger-pg.XXXXXX)
chmod 755 "$dir"
cleanup() { "$here/pg.sh" stop "$dir" || true; rm -rf "$dir"; }
trap cleanup EXIT
url=$("$here/pg.sh" start "$dir" | tail -n 1)
echo "throwaway PostgreSQL at ${url%%@*}@${url#*@}" >&2
export TEST_POSTGRES_URL="$url" DATABASE_URL="$url" LEDGER_REQUIRE_POSTGRES=1
"$@"

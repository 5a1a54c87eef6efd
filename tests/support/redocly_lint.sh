#!/usr/bin/env bash
# redocly_lint.sh DIR SPEC
# Lints the API's contract with @redocly/cli (npm, pinned in redocly/),
# installed under DIR on first use, with the rules in the spec's folder
# (redocly.yaml: every warning an error; .redocly.lint-ignore.yaml).
set -euo pipefail
dir=$1 spec=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
if ! cmp -s "$here/redocly/package-lock.json" "$dir/package-lock.json"; then
  cp "$here/redocly/package.json" "$here/redocly/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --silent --no-audit --no-fund) 2>&1 | grep -v nodedir || true
fi
# Nothing leaves the machine: no usage telemetry, no update check.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec "$dir/node_modules/.bin/redocly" lint --config "$(dirname "$spec")/redocly.yaml" "$spec"

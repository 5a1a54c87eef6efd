#!/usr/bin/env bash
# demo.sh BUILD_DIR: scripts/demo twice on a home of its own (a fresh
# embedded PostgreSQL): the first run uploads the six claims' bundles and
# reports the unknown id, the second finds them uploaded; the audit log
# verifies both times.
set -euo pipefail
build=$1
work=$(mktemp -d /tmp/taskhost-demo-XXXXXX)
chmod 755 "$work"  # as root, the embedded cluster runs as postgres in the home below
export TASKHOST_HOME=$work/home
trap '"$build/bin/taskhost" db stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
src=$(cd "$(dirname "$0")/../.." && pwd)

"$src/scripts/demo" "$build" >"$work/first" 2>&1 || { cat "$work/first"; exit 1; }
"$src/scripts/demo" "$build" >"$work/second" 2>&1 || { cat "$work/second"; exit 1; }
cat "$work/first" "$work/second"
count() { grep -c "^[0-9]*,$1," "$work/$2"; }
[ "$(count uploaded first)" -eq 6 ] && [ "$(count not_found first)" -eq 1 ]
[ "$(count skipped_existing second)" -eq 6 ] && [ "$(count uploaded second)" -eq 0 ]
grep -q '^audit log intact' "$work/first" && grep -q '^audit log intact' "$work/second"
ls "$TASKHOST_HOME"/objects/form526-handoff/form526/remediation/*/ | grep -c '\.zip$' | grep -qx 6
echo "demo: ok twice on one home"

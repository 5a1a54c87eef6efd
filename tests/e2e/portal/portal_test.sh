#!/usr/bin/env bash
# portal_test.sh BUILD_DIR SOURCE_DIR TEST_HOME
# The portal as an operator meets it: Debian's chromium, driven by
# playwright-core (portal.mjs), against a real `taskhost serve` and worker
# on a database of the test cluster. Screenshots of each page land in
# BUILD_DIR/artifacts/portal/.
set -euo pipefail
build=$1 src=$2 home=$3
th=$build/bin/taskhost
art=$build/artifacts/portal
work=$(mktemp -d /tmp/taskhost-portal-XXXXXX)
db=portal_e2e_$$
url=$("$th" --home "$home" db url | sed "s/dbname=taskhost/dbname=$db/")  # the runtime role
owner=${url/user=taskhost/user=taskhost_owner}
admin=$(sed "s/dbname=$db/dbname=postgres/; s/user=taskhost/user=postgres/" <<<"$url")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  rm -rf "$work" "${out:-}"
}
trap cleanup EXIT

# playwright-core, pinned by the lock, installed once per build tree.
mods=$build/tests/portal-e2e
mkdir -p "$mods"
if ! cmp -s "$src/tests/e2e/portal/package-lock.json" "$mods/package-lock.json"; then
  cp "$src"/tests/e2e/portal/{package.json,package-lock.json} "$mods/"
  (cd "$mods" && npm ci --silent --no-audit --no-fund) 2>&1 | grep -v nodedir || true
fi
cp "$src/tests/e2e/portal/portal.mjs" "$mods/"

psql "$admin" -qc "CREATE DATABASE $db OWNER taskhost_owner"
"$th" --database-url "$owner" migrate >/dev/null

# hello as built, and the probe fixture (slow items, an attached CSV) under
# a schema pinning its digest.
mkdir -p "$work/plugins" "$work/home"
cp "$build/lib/taskhost/plugins/hello.so" "$build/tests/fixtures/plugins/probe.so" "$work/plugins/"
cat >"$work/probe.yaml" <<EOF
name: probe
version: 1.0.0
description: Slow items, one CSV attached at the end
plugin: { path: probe.so, sha256: $(sha256sum "$work/plugins/probe.so" | cut -d' ' -f1) }
params:
  mode: { type: enum, values: [slow, wait_stop], default: slow, description: how to behave }
  items: { type: integer, min: 1, max: 1000000, default: 10, description: items to process }
  delay_ms: { type: integer, min: 0, max: 10000, default: 10, description: time per item }
  input: { type: string, upload: inbox, description: a CSV of ids (not read) }
capabilities: { s3: [ { bucket: inbox, prefix: portal/, access: read } ] }
permissions: { run: [operator, admin], view: [viewer, operator, admin], control: [operator, admin] }
EOF
th_args=(--home "$work/home" --database-url "$url" --plugin-dir "$work/plugins")
th_db() { "$th" "${th_args[@]}" "$@"; }

# A webhook consumer that has gone away (410): hello's deliveries to it
# become dead letters at once, for the webhooks page to redeliver.
python3 -c '
import http.server, sys
class Gone(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(410); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), Gone)
open(sys.argv[1], "w").write(str(s.server_port))
s.serve_forever()' "$work/hook.port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/hook.port" ] && break; sleep 0.1; done
{ cat "$build/schemas/hello.yaml"
  echo "hooks: { url: 'http://127.0.0.1:$(cat "$work/hook.port")/hook', events: [run.succeeded] }"
} >"$work/hello.yaml"
# hello again, under four eyes: an admin who did not submit a run decides.
sed 's/^name: hello$/name: gated/' "$build/schemas/hello.yaml" >"$work/gated.yaml"
echo "approval: { required: true, approvers: [admin] }" >>"$work/gated.yaml"
echo "allow_destinations: [127.0.0.0/8]" >"$work/taskhost.yml"
export TASKHOST_CONFIG=$work/taskhost.yml
th_db schema install "$work/hello.yaml" "$work/probe.yaml" "$work/gated.yaml" >/dev/null
th_db webhook-key hello >/dev/null
ADMIN_KEY=$(th_db api-key create --actor root --role admin)
OPS_KEY=$(th_db api-key create --actor ops --role operator)
VIEWER_KEY=$(th_db api-key create --actor auditor --role viewer)
export ADMIN_KEY OPS_KEY VIEWER_KEY

# Started directly (not through th_db) so that $! is taskhost itself.
"$th" "${th_args[@]}" serve --listen 127.0.0.1:0 --portal-dir "$build/share/taskhost/portal" \
  >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
"$th" "${th_args[@]}" --log-level warn worker --concurrency 2 2>"$work/worker.err" &
pids+=($!)
for _ in $(seq 300); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^taskhost serve: listening on //p' "$work/serve.out")
[ -n "$BASE" ] || { echo "serve did not start:"; cat "$work/serve.err"; exit 1; }
export BASE

# The browser runs as an unprivileged user when we are root: Chromium then
# keeps its own sandbox (user namespaces), so no --no-sandbox is needed.
out=$(mktemp -d /tmp/taskhost-portal-browser-XXXXXX)
export OUT=$out CHROMIUM=${CHROMIUM:-/usr/bin/chromium} HOME=$out
run_node=(node "$mods/portal.mjs")
if [ "$(id -u)" -eq 0 ]; then
  chown 65534:65534 "$out"
  run_node=(setpriv --reuid=65534 --regid=65534 --clear-groups "${run_node[@]}")
fi
status=0
"${run_node[@]}" || status=$?
mkdir -p "$art"
cp "$out"/*.png "$art/" 2>/dev/null || true
if [ $status -ne 0 ]; then
  echo "--- serve log"; tail -n 40 "$work/serve.err"
  echo "--- worker log"; tail -n 40 "$work/worker.err"
  exit $status
fi
echo "screenshots: $art"

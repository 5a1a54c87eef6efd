#!/usr/bin/env bash
# standardwebhooks_consumer.sh BUILD_DIR SOURCE_DIR TEST_HOME
# Deliveries as a customer's consumer sees them: a real `taskhost worker`
# (loopback allowlisted by its host config) delivers the hello task's state
# changes to a Node.js server that verifies each with the standardwebhooks
# npm library, before, during and after a secret rotation.
set -euo pipefail
build=$1 src=$2 home=$3
th=$build/bin/taskhost
work=$(mktemp -d /tmp/taskhost-consumer-XXXXXX)
db=webhook_consumer_$$
url=$("$th" --home "$home" db url | sed "s/dbname=taskhost/dbname=$db/")  # the runtime role
owner=${url/user=taskhost/user=taskhost_owner}
admin=$(sed "s/dbname=$db/dbname=postgres/; s/user=taskhost/user=postgres/" <<<"$url")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  rm -rf "$work"
}
trap cleanup EXIT
th_db() { "$th" --database-url "$url" --plugin-dir "$build/lib/taskhost/plugins" "$@"; }

cp "$src"/tests/integration/webhooks/consumer/{package.json,package-lock.json,consumer.js} "$work/"
(cd "$work" && npm ci --silent --no-audit --no-fund --prefer-offline) 2>&1 | grep -v nodedir || true
psql "$admin" -qc "CREATE DATABASE $db OWNER taskhost_owner"
"$th" --database-url "$owner" migrate

touch "$work/secret"
WEBHOOK_SECRET_FILE=$work/secret PORT_FILE=$work/port node "$work/consumer.js" >"$work/seen" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

{ cat "$build/schemas/hello.yaml"
  echo "hooks: { url: 'http://127.0.0.1:$port/hook', events: [run.queued, run.started, run.succeeded] }"
} >"$work/hello.yaml"
th_db schema install "$work/hello.yaml"
th_db webhook-key hello >"$work/secret"
echo "allow_destinations: [127.0.0.0/8]" >"$work/taskhost.yml"
TASKHOST_CONFIG=$work/taskhost.yml "$th" --database-url "$url" \
  --plugin-dir "$build/lib/taskhost/plugins" --log-level warn worker &
pids+=($!)

wait_for() {  # wait_for LINES
  for _ in $(seq 300); do [ "$(wc -l <"$work/seen")" -ge "$1" ] && return; sleep 0.1; done
  echo "consumer saw $(wc -l <"$work/seen") deliveries, expected $1:"; cat "$work/seen"; exit 1
}

th_db run hello -p name=one
wait_for 3
# Rotation: the consumer still holds the old secret; deliveries carry both.
th_db webhook-key hello --rotate >"$work/secret.new"
th_db run hello -p name=two
wait_for 6
# The consumer moves to the new secret.
cp "$work/secret.new" "$work/secret"
th_db run hello -p name=three
wait_for 9

cat "$work/seen"
expected='run.queued run.started run.succeeded'
types=$(node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  for (const l of lines) {
    if (!l.verified) { console.error("not verified:", l); process.exit(1); }
    if (l.wrongSecretAccepted) { console.error("a wrong secret verified:", l); process.exit(1); }
  }
  console.log(lines.map(l => l.type).join(" "));' "$work/seen")
[ "$types" = "$expected $expected $expected" ] || { echo "unexpected order: $types"; exit 1; }
echo "9 deliveries verified by standardwebhooks, in order, across a rotation"

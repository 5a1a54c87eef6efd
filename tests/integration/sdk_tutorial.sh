#!/usr/bin/env bash
# sdk_tutorial.sh BUILD_DIR SOURCE_DIR: follows sdk/README.md's walkthrough
# literally, as a newcomer would: taskhost installed into a prefix on PATH,
# a home of its own (a fresh embedded PostgreSQL), then every ```sh block of
# "From nothing to a staging run", in order, in one shell.
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d /tmp/taskhost-tutorial-XXXXXX)
chmod 755 "$work"  # as root, the embedded cluster runs as postgres in the home below
export TASKHOST_PREFIX=$work/prefix TASKHOST_HOME=$work/home
export PATH=$TASKHOST_PREFIX/bin:$PATH
trap 'pkill -f "^$TASKHOST_PREFIX/bin/taskhost worker" || true
      taskhost db stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$TASKHOST_PREFIX" >/dev/null

awk '/^## / { on = ($0 == "## From nothing to a staging run") }
     on && /^```sh$/ { code = 1; next }
     code && /^```$/ { code = 0; next }
     code' "$src/sdk/README.md" >"$work/steps.sh"
grep -q 'plugin new' "$work/steps.sh"  # the section was found
cd "$work"
SECONDS=0
bash -euxo pipefail steps.sh 2>&1 | tee "$work/log"
grep -q '^state *succeeded' "$work/log"
echo "the tutorial's commands took ${SECONDS}s"

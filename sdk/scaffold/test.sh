#!/usr/bin/env bash
# test.sh TASKHOST build/@NAME@.yaml: runs the plugin that schema pins once
# with `taskhost plugin test` (the embedded PostgreSQL, the local object
# store, the sandbox) on a small CSV with a bad line, and checks its output
# and its result file.
set -euo pipefail
taskhost=$1 schema=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'id,state\n1,open\n2,closed\n3,open\nnot a row\n' >"$work/input.csv"

"$taskhost" plugin test "$schema" \
  --object "@NAME@-input/test/input.csv=$work/input.csv" \
  -p input=test/input.csv -p column=state --result-dir "$work/out" | tee "$work/report"

grep -q '^state  *succeeded' "$work/report"
grep -qF '"lines":4,"malformed":1,"values":2' "$work/report"
diff <(printf 'state,rows\nclosed,1\nopen,2\n') "$work/out/result.csv"
echo "@NAME@: ok"

#!/usr/bin/env bash
# sdk_out_of_tree.sh BUILD_DIR SOURCE_DIR TEST_HOME
# The SDK as a plugin author outside this repository sees it: install
# taskhost and its SDK into a prefix, build plugins/hello as a project of its
# own with find_package(taskhost_sdk), pin the digest of that build in its
# schema, install the schema and run it with the installed taskhost.
set -euo pipefail
build=$1 src=$2 home=$3
work=$(mktemp -d /tmp/taskhost-sdk-XXXXXX)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/plugins/hello" -B "$work/hello" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/hello" >/dev/null
so=$work/hello/hello.so
th=$work/prefix/bin/taskhost

"$th" plugin inspect "$so" --load | tee "$work/inspect"
digest=$(sha256sum "$so" | cut -d' ' -f1)
grep -qx 'name *hello' "$work/inspect"
grep -qx "sha256 *$digest" "$work/inspect"

db=sdk_oot_$$
url=$("$th" --home "$home" db url | sed "s/dbname=taskhost/dbname=$db/")  # the runtime role
owner=${url/user=taskhost/user=taskhost_owner}
admin=$(sed "s/dbname=$db/dbname=postgres/; s/user=taskhost/user=postgres/" <<<"$url")
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -qc "CREATE DATABASE $db OWNER taskhost_owner"
trap 'psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$work"' EXIT

mkdir "$work/plugins"
cp "$so" "$work/plugins/"
# an out-of-tree build names itself by its plugin digest
sed "s/@SHA256@/$digest/; s/@BUILD@/${digest:0:12}/" "$src/schemas/hello.yaml" >"$work/hello.yaml"
"$th" --database-url "$owner" migrate
"$th" --database-url "$url" --plugin-dir "$work/plugins" schema install "$work/hello.yaml"
out=$("$th" --database-url "$url" --plugin-dir "$work/plugins" run hello -p name=outsider --inline --wait --json)
echo "$out"
grep -q '"state": "succeeded"' <<<"$out"
grep -q '"greeting": "Hello, outsider!"' <<<"$out"
echo "out-of-tree plugin built, pinned, installed and run"

#!/usr/bin/env bash
# s3rver_fixture.sh start|stop DIR
# s3rver (npm) on a free loopback port for one test run: data under DIR,
# buckets taskhost-test and esi-raw (the ESI plugins' raw bucket) created at start, the port in DIR/port. Credentials
# are s3rver's fixed S3RVER / S3RVER.
set -euo pipefail
action=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)
case $action in
  start)
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -rf "$dir/data" "$dir/port" "$dir/pid"
    mkdir -p "$dir/data"
    if ! cmp -s "$here/s3rver/package-lock.json" "$dir/package-lock.json"; then
      cp "$here/s3rver/package.json" "$here/s3rver/package-lock.json" "$dir/"
      (cd "$dir" && npm ci --silent --no-audit --no-fund) 2>&1 | grep -v nodedir || true
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # s3rver makes list continuation tokens with DES, which OpenSSL 3 keeps
    # in its legacy provider.
    NODE_OPTIONS=--openssl-legacy-provider nohup "$dir/node_modules/.bin/s3rver" -d "$dir/data" -a 127.0.0.1 -p "$port" --silent \
      --configure-bucket taskhost-test --configure-bucket esi-raw >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port" >"$dir/port"; exit 0; fi
      sleep 0.1
    done
    echo "s3rver did not start:"; cat "$dir/log"; exit 1 ;;
  stop)
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -rf "$dir/data" "$dir/pid" "$dir/port" ;;
esac

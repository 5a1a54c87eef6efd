#!/usr/bin/env bash
# pg_fixture.sh start|stop TASKHOST_BIN HOME
# A fresh private PostgreSQL cluster for one test run, through taskhost's own
# embedded-cluster code.
set -euo pipefail
action=$1 bin=$2 home=$3
case $action in
  start)
    "$bin" --home "$home" db stop >/dev/null 2>&1 || true
    rm -rf "$home"
    "$bin" --home "$home" db start ;;
  stop)
    "$bin" --home "$home" db stop
    rm -rf "$home" ;;
esac

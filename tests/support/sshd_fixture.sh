#!/usr/bin/env bash
# sshd_fixture.sh start|stop DIR
# OpenSSH's sshd on a free loopback port for one test run, as the current
# user, with generated host and user keys: DIR/port, DIR/user, DIR/id_ed25519
# (the user key), DIR/known_hosts (the real host key), DIR/wrong_known_hosts
# (another key for the same host), DIR/files (a directory to work in).
set -euo pipefail
action=$1 dir=$2
case $action in
  start)
    [ -f "$dir/sshd.pid" ] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    rm -rf "$dir" && mkdir -p "$dir/files"
    ssh-keygen -q -N '' -t ed25519 -f "$dir/host_ed25519"
    ssh-keygen -q -N '' -t ed25519 -f "$dir/other_host_ed25519"
    ssh-keygen -q -N '' -t ed25519 -f "$dir/id_ed25519"
    cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/other_host_ed25519.pub")" >"$dir/wrong_known_hosts"
    cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
CONF
    [ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd  # privilege separation directory
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/log"
    for _ in $(seq 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        id -un >"$dir/user"
        echo "$port" >"$dir/port"
        exit 0
      fi
      sleep 0.1
    done
    echo "sshd did not start:"; cat "$dir/log"; exit 1 ;;
  stop)
    [ -f "$dir/sshd.pid" ] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    rm -rf "$dir" ;;
esac

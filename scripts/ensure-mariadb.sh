#!/usr/bin/env bash
# Makes sure MariaDB server binaries (Debian's mariadb-server package, 10.11
# on bookworm) are installed. Tests start their own private servers with
# them (internal/mysqlserver); no running server is needed or used, and this
# script makes sure the install does not leave one running that tests could
# come to depend on.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/usr/bin"
if command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null; then
  exit 0
fi
echo "MariaDB server binaries not found; installing Debian's mariadb-server package" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

# The package's post-install starts the system service. A policy-rc.d that
# answers 101 ("action forbidden") is Debian's way to keep package scripts
# from starting services; an existing one is the admin's and stays.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq mariadb-server >/dev/null
cleanup
own_policy=""

# Should the service have started regardless (an admin's policy-rc.d allowing
# it), stop it. Only the system server is stopped: mariadbd runs in its data
# directory, and only the system one runs in /var/lib/mysql.
system_pids() {
  local pid
  for pid in $(pgrep -x mariadbd || true); do
    if [ "$($SUDO readlink "/proc/$pid/cwd" 2>/dev/null)" = /var/lib/mysql ]; then
      echo "$pid"
    fi
  done
}
if [ -n "$(system_pids)" ]; then
  echo "stopping the system MariaDB service the install started" >&2
  $SUDO service mariadb stop >/dev/null 2>&1 || true
  for pid in $(system_pids); do $SUDO kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    [ -z "$(system_pids)" ] && break
    sleep 0.1
  done
  if [ -n "$(system_pids)" ]; then
    echo "the system mariadbd ($(system_pids | tr '\n' ' ')) did not stop" >&2
    exit 1
  fi
fi
command -v mariadbd mariadb-install-db >&2

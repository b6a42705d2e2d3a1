#!/usr/bin/env bash
# Stop what ci/docker-up.sh started: running containers, dockerd, the registry.
# Images, registry data and the env file stay, so the next docker-up.sh is quick.
# Pass --purge to also delete all state under $DUNEBUGGER_CI_STATE.
set -euo pipefail
source "$(dirname "$0")/common.sh"

gone() { ! alive "$@"; }

# stop_pidfile COMM FILE: TERM the process in FILE, wait up to 20 s, then KILL.
stop_pidfile() {
  local name=$1 file=$2 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if alive "$file" "$name"; then
    kill -TERM "$pid"
    wait_for 20 gone "$file" "$name" || kill -KILL "$pid" 2>/dev/null || true
    log "$name stopped (pid $pid)"
  fi
  rm -f "$file"
}

if docker info >/dev/null 2>&1; then
  docker ps -q | xargs -r docker rm -f >/dev/null
fi
stop_pidfile dockerd "$DOCKER_STATE/pid"
rm -f "$DOCKER_STATE/docker.sock"
stop_pidfile docker-registry "$REGISTRY_STATE/pid"

if [[ ${1:-} == --purge ]]; then
  umount_under "$DOCKER_STATE"   # overlay2 and netns mounts must go before rm
  rm -rf "$DUNEBUGGER_CI_STATE"
  log "purged $DUNEBUGGER_CI_STATE"
fi

# shellcheck shell=bash disable=SC2034  # the variables are for the scripts sourcing this
# Shared settings for the ci/*.sh scripts; source it, don't run it.
# Every path can be overridden from the environment so a developer can keep a second
# test bed beside CI's (e.g. DUNEBUGGER_CI_STATE=/tmp/mybed ci/setup.sh).
: "${DUNEBUGGER_CI_STATE:=/var/tmp/dunebugger-ci}"       # daemons' state, sockets, logs
: "${DUNEBUGGER_CI_CACHE:=/var/cache/dunebugger-ci}"     # downloads and rootfs tarballs
: "${DUNEBUGGER_CI_ENV:=$DUNEBUGGER_CI_STATE/env.sh}"    # what tests and shells source
: "${DUNEBUGGER_REGISTRY:=localhost:5000}"
: "${DUNEBUGGER_DEVICE_IMAGE:=dunebugger-device:bookworm}"

DOCKER_STATE="$DUNEBUGGER_CI_STATE/docker"
REGISTRY_STATE="$DUNEBUGGER_CI_STATE/registry"
export DOCKER_HOST="unix://$DOCKER_STATE/docker.sock"
export DOCKER_CONFIG="$DUNEBUGGER_CI_STATE/docker-config"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# alive PIDFILE COMM: the pid in PIDFILE is a live (not zombie) process named COMM.
# A bare `kill -0` is not enough: after CI kills a run, the old pid can be a zombie or
# a recycled pid of an unrelated process.
alive() {
  local pid stat
  pid=$(cat "$1" 2>/dev/null) || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $stat == "$pid ($2) "* && $stat != "$pid ($2) Z"* ]]
}

# umount_under DIR: lazily unmount everything mounted below DIR (deepest first).
umount_under() {
  awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r \
    | xargs -r -n1 umount -l 2>/dev/null || true
}

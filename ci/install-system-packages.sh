#!/usr/bin/env bash
# Install the Debian packages the device/fleet tests need (engine, registry,
# compose v1, debootstrap, busybox for test images, sshd for fleet hosts).
# Idempotent: when every package is already installed it returns in well under a second
# without touching the network, so CI on a reused machine does not pay for apt-get update.
set -euo pipefail

PACKAGES=(
  docker.io          # dockerd 20.10 (the engine); /usr/local/bin/docker may be a newer client
  docker-registry    # local registry standing in for GHCR
  docker-compose     # compose v1 (1.29) — real devices may still run it
  debootstrap        # builds the systemd device rootfs
  busybox-static     # tiny rootfs for the test images (httpd, sh, wget)
  iproute2           # ip netns / veth for fleet tests
  openssh-server openssh-client
  rsync curl tar procps ca-certificates
  python3-venv       # `python3 -m venv` on Debian's python (pyenv's python has it built in)
  python3-yaml       # Debian's python3 runs the modules on fleet test hosts, as on a device
  chromium           # headless browser for the operator page test (tests/integration/test_page.py)
)

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg-query prints "install ok installed" only for fully installed packages.
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "system packages: all ${#PACKAGES[@]} present"
  exit 0
fi

echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out e.g. docker.io's recommended apparmor/cgroupfs-mount noise.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian packages enable services (ssh, docker, docker-registry) via systemd units; there is
# no systemd here, and ci/docker-up.sh starts what we need with our own config, so nothing else.
echo "system packages: done"

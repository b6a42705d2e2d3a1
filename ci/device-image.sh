#!/usr/bin/env bash
# Build the systemd "device" image ($DUNEBUGGER_DEVICE_IMAGE, default
# dunebugger-device:bookworm): a debootstrap'ed Debian bookworm that boots /sbin/init,
# with sshd, python3 (+venv, +yaml for the compose modules) and sudo so Ansible and
# molecule can drive it.
# Run it with the flags in tests/device/conftest.py (tmpfs /run, cgroup ro, SIGRTMIN+3).
# Cached: skipped when the image exists AND carries the hash of the package list (label
# org.dunebugger.device-rootfs); otherwise imported from the rootfs tarball in
# $DUNEBUGGER_CI_CACHE (seconds), replacing an older image under the same tag;
# debootstrap (~80 s) only when the tarball of this package list does not exist.
set -euo pipefail
source "$(dirname "$0")/common.sh"

INCLUDE=systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,python3-yaml,iproute2,sudo,ca-certificates,curl
SUITE=bookworm
ROOTFS_KEY=$SUITE-$(echo "$INCLUDE" | sha256sum | cut -c1-8)
TARBALL="$DUNEBUGGER_CI_CACHE/device-rootfs-$ROOTFS_KEY.tar"

# The Debian mirror this machine already uses (apt sources, one-line or deb822 format).
debian_mirror() {
  if [[ -n ${DUNEBUGGER_DEBIAN_MIRROR:-} ]]; then echo "$DUNEBUGGER_DEBIAN_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk -v s="$SUITE" '$1=="deb" && $3==s {print $2; exit}')
  [[ -n $m ]] || m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$SUITE" '
      /^URIs:/ {uri=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==s) hit=1}
      /^$/ {if (hit) {print uri; exit} uri=""; hit=0} END {if (hit) print uri}' | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

build_rootfs() {
  local root="$DUNEBUGGER_CI_CACHE/build/rootfs" mirror
  mirror=$(debian_mirror)
  log "debootstrap $SUITE from $mirror (about 80 s)"
  rm -rf "$root" && mkdir -p "$root"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$mirror" \
    >"$DUNEBUGGER_CI_CACHE/build/debootstrap.log" 2>&1 \
    || { tail -30 "$DUNEBUGGER_CI_CACHE/build/debootstrap.log" >&2; die "debootstrap failed"; }
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  # Empty machine-id: systemd makes a fresh one per container, as on first boot of a device.
  : >"$root/etc/machine-id"
  # Units that only make sense on real hardware and fail (or hang) in a container.
  local u
  for u in getty@tty1.service console-getty.service systemd-udevd.service \
           systemd-udev-trigger.service systemd-remount-fs.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$u"
  done
  tar --numeric-owner -C "$root" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$root"
  # Tarballs of older package lists are never used again (~220 MB each).
  find "$DUNEBUGGER_CI_CACHE" -maxdepth 1 -name "device-rootfs-$SUITE-*.tar" \
    ! -name "${TARBALL##*/}" -delete
}

KEY_FORMAT='{{ index .Config.Labels "org.dunebugger.device-rootfs" }}'
old_id=$(docker image inspect --format '{{.Id}}' "$DUNEBUGGER_DEVICE_IMAGE" 2>/dev/null || true)
if [[ -n $old_id ]]; then
  if [[ $(docker image inspect --format "$KEY_FORMAT" "$old_id") == "$ROOTFS_KEY" ]]; then
    log "image $DUNEBUGGER_DEVICE_IMAGE present ($ROOTFS_KEY)"; exit 0
  fi
  log "image $DUNEBUGGER_DEVICE_IMAGE is not of package list $ROOTFS_KEY: replacing it"
fi
mkdir -p "$DUNEBUGGER_CI_CACHE/build"
[[ -f $TARBALL ]] || build_rootfs
docker import -c 'CMD ["/sbin/init"]' \
  -c 'LABEL org.opencontainers.image.title=dunebugger-device' \
  -c "LABEL org.dunebugger.device-rootfs=$ROOTFS_KEY" \
  "$TARBALL" "$DUNEBUGGER_DEVICE_IMAGE" >/dev/null
log "image $DUNEBUGGER_DEVICE_IMAGE imported from $TARBALL"
# The tag moved; drop the old image unless a container still uses it.
if [[ -n $old_id ]]; then
  docker rmi "$old_id" >/dev/null 2>&1 || log "old image ${old_id:7:12} still in use; left in place"
fi

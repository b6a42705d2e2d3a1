#!/usr/bin/env bash
# Build tiny stand-ins for the DuneBugger container components and push them to the
# local registry ($DUNEBUGGER_REGISTRY, default localhost:5000). Each is ~1 MB: a
# busybox-static rootfs whose /start.sh serves http://<container>:8080/ with busybox httpd.
#
# Repositories: $DUNEBUGGER_REGISTRY/dunebugger-scheduler and .../dunebugger-remote,
# each with these tags:
#   1.0.0, 1.1.0, 1.2.0   healthy: GET /health -> 200 "ok", GET /version -> the tag
#   1.3.0-beta            healthy, a prerelease (as release tags like v1.3.0-beta)
#   1.8.0-unhealthy       runs and serves /version, but GET /health -> 404, so the image's
#                         HEALTHCHECK turns "unhealthy" after ~3 s
#   1.9.0-crash           serves nothing and exits with status 1 after 2 s
# Every image has: LABEL org.opencontainers.image.version=<tag>, .title=<repo>,
# ENV DUNEBUGGER_VERSION=<tag>, a HEALTHCHECK (wget /health every 1 s), EXPOSE 8080.
# PID 1 is a shell that traps SIGTERM and exits at once, so `docker stop`/recreate take
# well under a second (busybox httpd itself as PID 1 ignores SIGTERM; the 20.10 daemon
# rejects `import -c STOPSIGNAL`, so we cannot change the signal instead).
# Local copies are removed after the push, so the engine starts like a device's: tests
# that update a service really pull from the registry.
# Idempotent: skipped when every tag is in the registry and the recipe stamp matches.
set -euo pipefail
source "$(dirname "$0")/common.sh"

REPOS=(dunebugger-scheduler dunebugger-remote)
declare -A BEHAVIOUR=([1.0.0]=healthy [1.1.0]=healthy [1.2.0]=healthy
                      [1.3.0-beta]=healthy [1.8.0-unhealthy]=unhealthy [1.9.0-crash]=crash)
# Any edit to this script changes the recipe hash and so rebuilds every image.
RECIPE=$(sha256sum "$0" | cut -c1-12)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

START_SH='#!/bin/sh
# Test image entry point; behaviour and version come from the image build.
trap "exit 0" TERM INT
. /etc/dunebugger-test-image
mkdir -p /www && echo "$VERSION" >/www/version
case "$BEHAVIOUR" in
  healthy)   echo ok >/www/health ;;
  unhealthy) rm -f /www/health ;;
  crash)     sleep 2; echo "crashing on purpose" >&2; exit 1 ;;
esac
httpd -f -p 8080 -h /www &
wait $!   # interrupted by the TERM trap
'

make_rootfs() {  # make_rootfs DIR REPO TAG BEHAVIOUR
  local dir=$1
  mkdir -p "$dir"/{bin,etc,tmp,www}
  cp /bin/busybox "$dir/bin/busybox"
  for applet in sh httpd wget sleep cat echo mkdir rm ps kill ls env true; do
    ln -sf busybox "$dir/bin/$applet"
  done
  printf 'NAME=%s\nVERSION=%s\nBEHAVIOUR=%s\n' "$2" "$3" "$4" >"$dir/etc/dunebugger-test-image"
  printf '%s' "$START_SH" >"$dir/start.sh" && chmod 0755 "$dir/start.sh"
}

STAMP="$REGISTRY_STATE/test-images.recipe"
TAGS=$(printf '%s\n' "${!BEHAVIOUR[@]}" | sort -V)

registry_has() {  # registry_has REPO TAG
  curl -fs -o /dev/null --max-time 5 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$DUNEBUGGER_REGISTRY/v2/$1/manifests/$2"
}

all_present() {
  [[ -f $STAMP && $(cat "$STAMP") == "$RECIPE" ]] || return 1
  local repo tag
  for repo in "${REPOS[@]}"; do for tag in $TAGS; do registry_has "$repo" "$tag" || return 1; done; done
}

build_and_push() {  # build_and_push REPO TAG
  local repo=$1 tag=$2 behaviour=${BEHAVIOUR[$2]} ref="$DUNEBUGGER_REGISTRY/$1:$2"
  local dir="$WORK/$repo-$tag"
  make_rootfs "$dir" "$repo" "$tag" "$behaviour"
  tar --numeric-owner --owner=0 --group=0 -C "$dir" -c . | docker import \
    -c 'CMD ["/start.sh"]' -c 'EXPOSE 8080' -c "ENV DUNEBUGGER_VERSION=$tag" \
    -c "LABEL org.opencontainers.image.version=$tag org.opencontainers.image.title=$repo" \
    -c "LABEL org.dunebugger.test-behaviour=$behaviour org.dunebugger.test-recipe=$RECIPE" \
    -c 'HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]' \
    - "$ref" >/dev/null
  docker push -q "$ref" >/dev/null
  docker rmi "$ref" >/dev/null
  log "pushed $ref ($behaviour)"
}

if all_present; then log "test images present in $DUNEBUGGER_REGISTRY (recipe $RECIPE)"; exit 0; fi
for repo in "${REPOS[@]}"; do
  for tag in $TAGS; do build_and_push "$repo" "$tag"; done
done
echo "$RECIPE" >"$STAMP"
log "test images ready in $DUNEBUGGER_REGISTRY: ${REPOS[*]} x" $TAGS

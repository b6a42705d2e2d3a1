"""What is particular to updating a compose service (a container component): the tag
to move to and the extra-vars of the container playbooks. Nothing is downloaded by the
updater itself: the device's engine pulls the image from the registry, or, for an image
archive on this device, the updater loads it into the engine just before the playbook
runs, which then pulls nothing (`container_image_source: loaded`)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from typing import Any

from ..config import ComponentSpec, Settings
from ..errors import PreflightError
from ..release.local import LocalFiles
from ..release.manifest import Manifest
from ..release.releases import Release
from ..versions import NotAVersion, parse_version
from . import images
from .installed import compose_backup_versions
from .plan import Plan, PreparedUpdate

UPDATE_STEPS: tuple[str, ...] = ("preflight", "update", "postflight")
ROLLBACK_STEPS: tuple[str, ...] = ("rollback", "postflight")


class ContainerProcedure:
    update_playbook = "update_container"
    rollback_playbook = "rollback_container"
    update_steps = UPDATE_STEPS
    rollback_steps = ROLLBACK_STEPS
    requires_signed_manifest = False  # signatures cover core releases; images come from their registry as they are

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def target_version(self, release: Release, manifest: Manifest | None) -> str:
        """The image tag of a release: the manifest's `image_tag`, else the tag without "v".
        A manifest tag that names another version (or a moving tag like `latest`) is refused."""
        if manifest and manifest.image_tag:
            try:
                same = parse_version(manifest.image_tag) == release.version
            except NotAVersion:
                same = False
            if not same:
                raise PreflightError(
                    f"the manifest's image_tag {manifest.image_tag!r} is not release {release.version_text}"
                )
            return manifest.image_tag
        return release.version_text

    async def prepare_release(self, plan: Plan) -> PreparedUpdate:
        """Nothing to download here: each device's engine pulls the image, or the image
        comes from an archive on this device. The extra-vars every device gets."""
        spec, tag = plan.spec, plan.version_text
        values = self.release_vars(spec, tag, plan.manifest)
        details = {"image": f"{spec.image}:{tag}", "service": spec.service, "steps": list(UPDATE_STEPS)}
        recreate = f"recreate only service {spec.service}"
        if plan.release.files is None:
            return PreparedUpdate(values, details, f"would pull {details['image']} and {recreate}")
        return await self._prepare_loaded(plan.release.files, values, details, recreate)

    async def prepare_update(self, plan: Plan) -> PreparedUpdate:
        """The release prepared, with this device's settings: update_container.yml's extra-vars."""
        release = await self.prepare_release(plan)
        return dataclasses.replace(
            release,
            extra_vars={**self.device_vars(plan.spec), **release.extra_vars},
            details={**release.details, "compose_file": str(self._settings.docker_compose_path)},
        )

    async def _prepare_loaded(
        self, files: LocalFiles, values: dict[str, Any], details: dict[str, Any], recreate: str
    ) -> PreparedUpdate:
        """An image archive: checked against the sha256s known for it now, loaded into the
        engine under the device lock (never in a dry run); the playbook pulls nothing."""
        files.check_digest(await asyncio.to_thread(files.archive_digest))
        assert files.image_id is not None  # LocalReleases reads it from every image archive
        load = functools.partial(images.load, files.archive, files.image_id, details["image"])
        return PreparedUpdate(
            {**values, "container_image_source": "loaded"},
            {**details, "file": str(files.archive), "image_id": files.image_id},
            f"would load {details['image']} from {files.where} and {recreate}",
            stage=lambda: asyncio.to_thread(load),
        )

    @staticmethod
    def release_vars(spec: ComponentSpec, tag: str, manifest: Manifest | None) -> dict[str, Any]:
        """What is the same on every device: the service, its image and tag, and the
        checks the release's manifest asks for (a fleet run passes only these)."""
        return {**_identity_vars(spec), "dunebugger_version": tag, **manifest_check_vars(manifest)}

    @staticmethod
    def missing_rollback_target(spec: ComponentSpec) -> str | None:
        return None  # the playbook finds the newest compose backup and says when there is none

    def unknown_rollback_target(self, spec: ComponentSpec, to_version: str) -> str | None:
        """A compose backup taken while `to_version` ran (compose-<service>-<stamp>-<version>.yml)."""
        backups = self._settings.backup_path
        kept = compose_backup_versions(backups, spec.service)
        if to_version in kept:
            return None
        return (
            f"no compose backup of {spec.service} at {to_version} in {backups}"
            f" ({'backed up: ' + ', '.join(kept) if kept else 'none is kept'})"
        )

    @staticmethod
    def post_switch_waits(spec: ComponentSpec, manifest: Manifest | None) -> list[tuple[str, float]]:
        """The longest waits after the switch, each named as the setting that sets it:
        the container settling (running, Docker health), then the health endpoint."""
        checks = manifest.checks if manifest else None
        if checks and checks.health_timeout:
            timeout = ("post_update_checks health_endpoint timeout_seconds", float(checks.health_timeout))
        else:
            timeout = ("healthTimeoutSeconds", float(spec.health_timeout_seconds))
        waits = [timeout]
        if (checks and checks.health_url) or spec.health_url:
            waits.append(timeout)
        if manifest and manifest.restart_timeout:
            waits.append(("update_steps restart_service timeout_seconds", float(manifest.restart_timeout)))
        return waits

    def rollback_vars(self, spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        return {**self.device_vars(spec), **self.rollback_target_vars(spec, to_version)}

    @staticmethod
    def rollback_target_vars(spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        """The service and the version to go back to ("": the newest backup); a fleet
        rollback passes only these."""
        return {**_identity_vars(spec), "container_rollback_version": to_version or ""}

    def device_vars(self, spec: ComponentSpec) -> dict[str, Any]:
        """How this device runs the service, from its own configuration (a fleet's
        devices have theirs in the inventory)."""
        return {
            "container_compose_command": list(self._settings.compose_command),
            "container_compose_project": self._settings.compose_project,
            "container_compose_file": self._settings.docker_compose_path,
            "container_backup_path": self._settings.backup_path,
            "container_backup_keep": self._settings.backups_to_keep,
            "container_health_url": spec.health_url,
            "container_health_timeout_seconds": spec.health_timeout_seconds,
        }


def _identity_vars(spec: ComponentSpec) -> dict[str, Any]:
    return {"dunebugger_component": spec.name, "container_service": spec.service, "container_image": spec.image}


def manifest_check_vars(manifest: Manifest | None) -> dict[str, Any]:
    """What a release's manifest asks for: checks before the switch, the stop timeout of
    the old container, and the checks that verify this release (only this one)."""
    if manifest is None:
        return {}
    checks = manifest.checks
    candidates = {
        "container_min_free_mb": checks.min_free_mb,
        "container_check_service_running_before": checks.require_service_running or None,
        "container_expected_name": manifest.container_name,
        "container_backup_max_age_hours": checks.backup_max_age_hours,
        "container_restart_args": ["--timeout", str(manifest.restart_timeout)] if manifest.restart_timeout else None,
        "dunebugger_release_checks": checks.verification(),
    }
    return {name: value for name, value in candidates.items() if value}

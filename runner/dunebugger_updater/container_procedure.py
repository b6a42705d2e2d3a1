"""What is particular to updating a compose service (a container component): the tag
to move to and the extra-vars of the container playbooks. Nothing is downloaded by the
updater itself: the device's engine pulls the image from the registry."""

from __future__ import annotations

from typing import Any

from .config import ComponentSpec, Settings
from .errors import PreflightError
from .manifest import Manifest
from .releases import Release
from .versions import NotAVersion, parse_version, without_v

UPDATE_STEPS = ("preflight", "container_update", "postflight")
ROLLBACK_STEPS = ("container_rollback", "postflight")


class ContainerProcedure:
    update_playbook = "update_container"
    rollback_playbook = "rollback_container"
    update_steps = UPDATE_STEPS
    rollback_steps = ROLLBACK_STEPS

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def target_tag(self, release: Release, manifest: Manifest | None) -> str:
        """The image tag of a release: the manifest's `image_tag`, else the tag without "v".
        A manifest tag that names another version (or a moving tag like `latest`) is refused."""
        if manifest and manifest.image_tag:
            try:
                same = parse_version(manifest.image_tag) == release.version
            except NotAVersion:
                same = False
            if not same:
                raise PreflightError(f"the manifest's image_tag {manifest.image_tag!r} is not release {release.version}")
            return manifest.image_tag
        return without_v(release.tag)

    def update_vars(self, spec: ComponentSpec, tag: str, manifest: Manifest | None) -> dict[str, Any]:
        checks = manifest.checks if manifest else None
        values = {**self._common_vars(spec, manifest), "dunebugger_version": tag}
        if checks and checks.min_free_mb:
            values["container_min_free_mb"] = checks.min_free_mb
        if checks and checks.health_expected_status:
            values["container_health_expected_status"] = checks.health_expected_status
        return values

    def rollback_vars(self, spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        return {**self._common_vars(spec, None), "container_rollback_version": to_version or ""}

    def dry_run_details(self, spec: ComponentSpec, tag: str) -> dict[str, Any]:
        return {
            "image": f"{spec.image}:{tag}",
            "compose_file": str(self._settings.docker_compose_path),
            "service": spec.service,
            "steps": list(UPDATE_STEPS),
        }

    def _common_vars(self, spec: ComponentSpec, manifest: Manifest | None) -> dict[str, Any]:
        checks = manifest.checks if manifest else None
        return {
            "dunebugger_component": spec.name,
            "container_compose_command": list(self._settings.compose_command),
            "container_compose_file": self._settings.docker_compose_path,
            "container_service": spec.service,
            "container_image": spec.image,
            "container_backup_path": self._settings.backup_path,
            "container_backup_keep": self._settings.backups_to_keep,
            "container_health_url": (checks.health_url if checks and checks.health_url else spec.health_url),
            "container_health_timeout_seconds": (checks.health_timeout if checks and checks.health_timeout
                                                 else spec.health_timeout_seconds),
        }

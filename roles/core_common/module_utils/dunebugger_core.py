# Shared by the core modules (core_release_info, core_switch, core_verify, ...): reading a
# core installation, the service, the link switch, backups, the health wait and the
# recorded checks of a release. Runs on the device: Python 3.9+, standard library only.
# Functions raise CoreError with a message a person can act on; modules turn it into
# fail_json.

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

from ansible.module_utils.dunebugger_files import (
    create_private, private_directory, remove_tree, walk_tree, write_private,
)

BACKUP_RE = re.compile(r"^core-(?P<version>.+)-(?P<stamp>\d{8}T\d{6})\.tar\.gz$")
CHECKS_DIR = ".checks"  # <releases>/.checks/<version>.json: what verified each release
PRUNING_SUFFIX = ".pruning"  # <releases>/.<version>.pruning: a release being removed
PREVIOUS_FILE = ".previous"  # <releases>/.previous: the release that ran before the last switch
# What service commands (and so the app started by the `command` manager) inherit: never
# a token the caller of ansible-playbook had, nor Ansible's own settings.
SERVICE_ENVIRONMENT = ("PATH", "HOME", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES")
COMMAND_TIMEOUT_SECONDS = 120.0
MAX_BODY_BYTES = 64 * 1024


class CoreError(Exception):
    """Something on the device prevents the step; the message says what."""


# --- the installation ------------------------------------------------------------------


def read_version(directory):
    """The version in directory/VERSION (JSON with "version", or one plain line), or None."""
    try:
        with open(os.path.join(directory, "VERSION"), encoding="utf-8") as handle:
            text = handle.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text).get("version")
        except (ValueError, AttributeError):
            return None
        return str(value).strip() if value else None
    return text.splitlines()[0].strip() if text else None


def read_line(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def free_mb(path):
    """Free space for unprivileged use on the filesystem `path` is (or would be) on."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize // (1024 * 1024)


def retained_releases(releases_path):
    try:
        names = os.listdir(releases_path)
    except OSError:
        return []
    return sorted(name for name in names if not name.startswith(".") and not name.endswith(".partial")
                  and os.path.isdir(os.path.join(releases_path, name)))


def prune_releases(releases_path, keep, protect):
    """Keep the newest `keep` release directories (by mtime, the protected ones counted),
    never removing `protect`; stale *.partial directories and the recorded checks of
    releases that are gone go too. (removed paths, warnings): run once the new release is
    verified, a directory that will not go is a warning, never a reason to roll back."""
    entries = list(os.scandir(releases_path))
    leftovers = [entry.path for entry in entries if entry.name.startswith(".") and entry.name.endswith(PRUNING_SUFFIX)]
    stale = stale_releases([entry for entry in entries if entry.is_dir(follow_symlinks=False)
                            and not entry.name.startswith(".")], keep, set(protect))
    removed, warnings = remove_releases(releases_path, stale, leftovers)
    records, record_warnings = remove_orphan_check_records(releases_path)
    return sorted(removed + records), warnings + record_warnings


def stale_releases(entries, keep, protect):
    """The release directories beyond `keep` (newest first by mtime), and *.partial ones."""
    stale = [entry.path for entry in entries if entry.name.endswith(".partial")]
    releases = sorted((entry for entry in entries if not entry.name.endswith(".partial")),
                      key=lambda entry: entry.stat(follow_symlinks=False).st_mtime, reverse=True)
    room = max(keep - len(protect & {entry.name for entry in releases}), 0)
    for entry in releases:
        if entry.name in protect:
            continue
        if room:
            room -= 1
        else:
            stale.append(entry.path)
    return stale


def remove_releases(releases_path, stale, leftovers):
    """Remove `stale` and what earlier prunes left (`leftovers`): (removed, warnings). Each
    is renamed to a hidden .<name>.pruning first, so a tree that will not go all the way
    is never left looking like a release (a rollback target); the next prune tries again."""
    doomed, warnings = [(path, None) for path in leftovers], []
    for path in stale:
        hidden = os.path.join(releases_path, f".{os.path.basename(path)}{PRUNING_SUFFIX}")
        try:
            remove_tree(hidden)
            os.rename(path, hidden)
        except OSError as exc:
            warnings.append(f"cannot remove old release {path}: {exc}")
            continue
        doomed.append((hidden, path))
    removed = []
    for hidden, path in doomed:
        try:
            remove_tree(hidden)
        except OSError as exc:
            warnings.append(f"cannot remove old release {path or hidden} (left as {hidden}): {exc}")
            continue
        if path:
            removed.append(path)
    return removed, warnings


def remove_orphan_check_records(releases_path):
    """The recorded checks (.checks/<version>.json) of releases that are gone: (removed, warnings)."""
    records = os.path.join(releases_path, CHECKS_DIR)
    try:
        names = os.listdir(records)
    except OSError:
        return [], []
    removed, warnings = [], []
    for name in names:
        version = name[:-len(".json")] if name.endswith(".json") else None
        if version and not os.path.isdir(os.path.join(releases_path, version)):
            path = os.path.join(records, name)
            try:
                os.unlink(path)
            except OSError as exc:
                warnings.append(f"cannot remove {path}: {exc}")
                continue
            removed.append(path)
    return removed, warnings


def backups_of(backup_path, version):
    """Backups of `version`, newest first."""
    if not backup_path or not os.path.isdir(backup_path):
        return []
    found = [(match.group("stamp"), os.path.join(backup_path, name))
             for name in os.listdir(backup_path)
             if (match := BACKUP_RE.match(name)) and match.group("version") == version]
    return [path for _, path in sorted(found, reverse=True)]


def describe_installation(install_path, releases_path):
    exists = os.path.lexists(install_path)
    real_path = os.path.realpath(install_path) if exists else None
    release = None
    if real_path and os.path.dirname(real_path) == os.path.realpath(releases_path):
        release = os.path.basename(real_path)
    version = read_version(install_path) if exists else None
    return {
        "exists": exists,
        "is_link": os.path.islink(install_path),
        "is_dir": os.path.isdir(install_path),
        "real_path": real_path,
        "release": release,
        "version": version,
        "installed": version is not None,
        "previous": read_line(os.path.join(releases_path, PREVIOUS_FILE)),
        "retained": retained_releases(releases_path),
        "free_mb": free_mb(releases_path),
    }


def describe_candidate(releases_path, backup_path, version):
    path = os.path.join(releases_path, version)
    return {
        "version": version,
        "path": path,
        "exists": os.path.isdir(path),
        "found_version": read_version(path),
        "has_venv": os.path.exists(os.path.join(path, ".venv", "bin", "python")),
        "backups": backups_of(backup_path, version),
        "checks": read_checks(checks_path(releases_path, version)),
    }


# --- recorded checks -------------------------------------------------------------------

CHECK_FIELDS = {
    "health_url": str,
    "health_expected_status": int,
    "health_timeout_seconds": float,
    "service_active_timeout_seconds": float,
}


def checks_path(releases_path, version):
    return os.path.join(releases_path, CHECKS_DIR, version + ".json")


def normalised_checks(checks):
    """Only the known fields, each of its type; values that do not convert are dropped."""
    clean = {}
    for name, kind in CHECK_FIELDS.items():
        value = (checks or {}).get(name)
        if value is None:
            continue
        try:
            clean[name] = kind(value)
        except (TypeError, ValueError):
            continue
    return clean


def read_checks(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(16 * 1024 + 1)
        document = json.loads(data.decode("utf-8")) if len(data) <= 16 * 1024 else None
    except (OSError, ValueError):
        return {}
    return normalised_checks(document) if isinstance(document, dict) else {}


def write_checks(path, checks):
    """Atomically, 0600 in a 0700 directory (a container's records live beside its
    backups); returns False (never raises) when it cannot: a record that is missing
    only means a later rollback to that release uses the device's own checks."""
    try:
        private_directory(os.path.dirname(path))
        write_private(path, json.dumps(normalised_checks(checks), sort_keys=True).encode())
    except OSError:
        return False
    return True


# --- the service -----------------------------------------------------------------------


def narrow_environment():
    """Keep only SERVICE_ENVIRONMENT in this (short-lived) module process: every service
    command starts from it, and so does the app the `command` manager starts."""
    for name in set(os.environ).difference(SERVICE_ENVIRONMENT):
        del os.environ[name]


class Service:
    """The core service through systemd or explicit argv commands (never a shell)."""

    def __init__(self, manager, name="dunebugger", start_command=None, stop_command=None, status_command=None,
                 timeout=COMMAND_TIMEOUT_SECONDS):
        self.manager = manager
        self.timeout = timeout
        if manager == "systemd":
            self.commands = {
                "start": ["systemctl", "start", name],
                "stop": ["systemctl", "stop", name],
                "status": ["systemctl", "is-active", "--quiet", name],
                "loaded": ["systemctl", "show", "--property=LoadState", "--value", name],
            }
        else:
            self.commands = {"start": start_command, "stop": stop_command, "status": status_command}

    def run(self, verb, timeout=None):
        """(exit status or None when it could not run, output)."""
        argv = self.commands.get(verb)
        if not argv:
            raise CoreError(f"no {verb} command is configured for the core service")
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout or self.timeout, check=False)
        except OSError as exc:
            return None, f"cannot run {argv[0]}: {exc}"
        except subprocess.TimeoutExpired:
            return None, f"{argv[0]} did not finish within {timeout or self.timeout:g}s"
        return done.returncode, (done.stderr or done.stdout).strip()

    def probe(self):
        """(whether the manager knows the service, whether it is active, detail)."""
        if self.manager == "systemd":
            rc, out = self.run("loaded")
            known = rc == 0 and out == "loaded"
            return known, known and self.active(), out
        rc, out = self.run("status")  # one status run says both
        return rc is not None, rc == 0, out

    def active(self):
        return self.run("status")[0] == 0

    def act(self, verb):
        rc, out = self.run(verb)
        if rc != 0:
            detail = out.splitlines()[-1] if out else ""
            raise CoreError(f"{verb} of the core service failed (rc={rc})" + (f": {detail}" if detail else ""))

    def stop(self):
        """Stop it if it runs; whether it ran."""
        was_active = self.active()
        if was_active:
            self.act("stop")
        return was_active

    def start(self):
        if not self.active():
            self.act("start")

    def wait_active(self, wait):
        """Active within `wait` seconds (wall clock)."""
        deadline = time.monotonic() + wait
        while not self.active():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True


# --- the link switch -------------------------------------------------------------------


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def record_previous(releases_path, previous):
    """Written before the link moves, so a crash right after the switch knows the way back."""
    os.makedirs(releases_path, exist_ok=True)
    write_private(os.path.join(releases_path, PREVIOUS_FILE), (previous + "\n").encode())


def recorded_previous(releases_path):
    return read_line(os.path.join(releases_path, PREVIOUS_FILE))


def restore_previous(releases_path, previous):
    """Put back what .previous said before a switch that was undone (None: nothing)."""
    if previous:
        record_previous(releases_path, previous)
    else:
        try:
            os.unlink(os.path.join(releases_path, PREVIOUS_FILE))
        except FileNotFoundError:
            pass


def point_link(path, target, migrate_to=None):
    """Make `path` a symlink to `target` atomically (a temporary link renamed over it). A
    plain directory at `path` (an installation from before the releases layout) is first
    moved to `migrate_to`. Returns where the plain directory went, or None."""
    if not os.path.isdir(target):
        raise CoreError(f"release directory {target} does not exist")
    migrated = None
    if os.path.isdir(path) and not os.path.islink(path):
        if not migrate_to:
            raise CoreError(f"{path} is a plain directory and there is nowhere to move it")
        if os.path.lexists(migrate_to):
            raise CoreError(f"cannot move {path} aside: {migrate_to} already exists")
        os.makedirs(os.path.dirname(migrate_to), exist_ok=True)
        os.rename(path, migrate_to)
        migrated = migrate_to
    elif os.path.lexists(path) and not os.path.islink(path):
        raise CoreError(f"{path} exists and is neither a symlink nor a directory")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-link-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))
    return migrated


def points_at(path, target):
    return os.path.islink(path) and os.path.realpath(path) == os.path.realpath(target)


# --- backups ---------------------------------------------------------------------------


def create_backup(src, dest_dir, version, timestamp):
    """core-<version>-<timestamp>.tar.gz of `src` (the link resolved; links inside kept
    as links), under a top directory named after the version; written to a temporary
    name, then renamed into place. The installation may hold secrets that only its
    owner reads: the backup is 0600 from its creation, in a 0700 directory
    (private_directory)."""
    private_directory(dest_dir)
    path = os.path.join(dest_dir, f"core-{version}-{timestamp}.tar.gz")
    tmp = path + ".part"
    remove_tree(tmp)
    try:
        # Level 1: several times faster than the default 9 on a venv full of wheels, for a
        # slightly larger file; the backup is taken while the update waits.
        with os.fdopen(create_private(tmp), "wb") as handle, \
                tarfile.open(fileobj=handle, mode="w:gz", compresslevel=1) as tar:
            for path_in_tree, relative in walk_tree(os.path.realpath(src)):
                tar.add(path_in_tree, arcname=os.path.join(version, relative) if relative else version,
                        recursive=False)
        os.replace(tmp, path)
    finally:
        remove_tree(tmp)
    return path


def verify_backup(path, max_age_hours):
    """Read the backup back whole: a backup that cannot be read cannot be restored."""
    age = time.time() - os.stat(path).st_mtime
    if age > max_age_hours * 3600:
        raise CoreError(f"{path} is {age / 3600:.1f} hours old, more than {max_age_hours}")
    members = 0
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                members += 1
                if member.isfile():
                    with tar.extractfile(member) as data:
                        while data.read(1 << 20):
                            pass
    except (OSError, tarfile.TarError) as exc:
        raise CoreError(f"the backup {path} cannot be read back: {exc}") from None
    if members == 0:
        raise CoreError(f"the backup {path} holds nothing")
    return members


def prune_backups(dest_dir, keep):
    found = sorted((match.group("stamp"), name) for name in os.listdir(dest_dir) if (match := BACKUP_RE.match(name)))
    stale = [os.path.join(dest_dir, name) for _, name in found[:max(len(found) - keep, 0)]]
    for path in stale:
        os.unlink(path)
    return stale


def restore_backup(archive, dest):
    """Extract a backup this updater wrote (hence trusted: a release venv legitimately
    holds absolute symlinks) into dest.partial, then rename it to dest. The release
    directory gets the mode it had (0700 stays 0700), and is never wider meanwhile."""
    partial = dest + ".partial"
    remove_tree(partial)
    os.makedirs(os.path.dirname(partial), exist_ok=True)
    os.mkdir(partial, 0o700)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, top_mode = [], None
            for member in tar.getmembers():
                top, _, rest = member.name.partition("/")
                if not rest:
                    top_mode = member.mode
                    continue
                member.name = rest
                if member.islnk():
                    member.linkname = member.linkname.partition("/")[2]
                members.append(member)
            extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            tar.extractall(partial, members=members, **extra)
        if top_mode is not None:
            os.chmod(partial, top_mode & 0o7777)
        remove_tree(dest)
        os.rename(partial, dest)
    except (OSError, tarfile.TarError) as exc:
        remove_tree(partial)
        raise CoreError(f"cannot restore {archive}: {exc}") from None


# --- the health endpoint ---------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def probe(url, timeout):
    """(status or None, JSON object of the body or None, error text). Redirects are not
    followed: a redirect's own status is the answer."""
    try:
        with _OPENER.open(url, timeout=timeout) as answer:
            return answer.status, _json_object(answer.read(MAX_BODY_BYTES)), ""
    except urllib.error.HTTPError as exc:
        return exc.code, None, ""
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return None, None, str(getattr(exc, "reason", exc))


def _json_object(data):
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def wait_healthy(url, expected, timeout, delay=1.0, request_timeout=5.0):
    """Poll until `url` answers `expected` or `timeout` seconds (wall clock) have passed,
    whatever each request costs: each one is cut to what is left of the wait."""
    started = time.monotonic()
    deadline = started + timeout
    attempts = 0
    while True:
        attempts += 1
        remaining = max(deadline - time.monotonic(), 0.1)
        status, body, error = probe(url, min(request_timeout, remaining))
        healthy = status == expected
        last = "" if healthy else (f"answered {status}" if status is not None else (error or "no answer"))
        if healthy or time.monotonic() + delay >= deadline:
            return {"healthy": healthy, "status": status, "json": body, "attempts": attempts,
                    "elapsed": round(time.monotonic() - started, 2), "last_error": last}
        time.sleep(delay)


def unhealthy_message(url, expected, timeout, result):
    return (f"the health endpoint {url} did not answer {expected} within {timeout:g}s "
            f"({result['attempts']} attempts; last: {result['last_error']})")

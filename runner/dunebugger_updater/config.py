"""Settings: the `[Updater]` section of dunebugger.conf, `[Component:NAME]` sections,
and `UPDATER_<KEY>` environment overrides, checked once at load time.

Precedence, highest first: environment, config file, built-in default. Every error
names the file, the section and the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .addresses import is_loopback
from .errors import ConfigError, os_reason
from .files import FileTooLarge, NotRegularFile, read_capped
from .tokens import token_problem

UPDATER_SECTION = "Updater"
COMPONENT_SECTION_PREFIX = "Component:"
DEFAULT_CONFIG_CANDIDATES = (Path("config/dunebugger.conf"),)
MAX_CONFIG_BYTES = 1024 * 1024  # a shared dunebugger.conf is a few KB

COMPONENT_TYPES = ("python_app", "container")
SERVICE_MANAGERS = ("systemd", "command")
AUTO_UPDATE_LEVELS = ("off", "patch", "minor", "all")
FLEET_STRATEGIES = ("linear", "mitogen_linear")  # mitogen_linear needs the mitogen package

# Strict shapes for everything that ends up in a path, an argv or a URL.
COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9_.-]{1,100}$")
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._-]*(:[0-9]{1,5})?(/[a-z0-9][a-z0-9._-]*)+$")
COMPOSE_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ASSET_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]*\{version\}[A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class ComponentSpec:
    """One managed component, as configured."""

    name: str
    type: str
    repo: str
    health_url: str = ""
    health_timeout_seconds: int = 60
    # Its update may replace the process or container that asked for it (remote hosts
    # the frontend link, and maybe the updater): the run is detached from the caller.
    self_hosted: bool = False
    # python_app
    service_name: str = "dunebugger"
    service_manager: str = "systemd"
    start_command: tuple[str, ...] = ()
    stop_command: tuple[str, ...] = ()
    status_command: tuple[str, ...] = ()
    asset_pattern: str = "dunebugger-{version}.tar.gz"
    install_path: Path | None = None
    python: str = "python3"
    pip_extra_args: tuple[str, ...] = ()
    settle_seconds: int | None = None  # still running this long after its start (None: the playbooks' 0.5 s)
    # container
    service: str = ""
    image: str = ""

    @property
    def is_container(self) -> bool:
        return self.type == "container"


@dataclass(frozen=True)
class Settings:
    update_check_interval_hours: int = 24
    docker_compose_path: Path = Path("/opt/dunebugger/docker-compose.yml")
    core_install_path: Path = Path("/opt/dunebugger/core")
    backup_path: Path = Path("/opt/dunebugger/backups")
    github_account: str = "marco-svitol"
    github_api_url: str = "https://api.github.com"
    github_token: str | None = field(default=None, repr=False)  # secrets stay out of every repr
    include_prerelease: bool = False
    state_path: Path = Path("/var/lib/dunebugger-updater")
    initial_check_delay_minutes: int = 5
    http_timeout_seconds: float = 15.0  # the whole of one API request, body included
    download_timeout_seconds: float = 600.0  # the whole of one download, redirects included
    compose_command: tuple[str, ...] = ()
    compose_project: str = ""  # "" = the project the running service belongs to
    max_download_mb: int = 200
    max_extract_mb: int = 1024
    signing_public_key: str | None = None  # OpenSSH public key line: releases must carry <artifact>.sig
    allowed_signers: Path | None = None  # ssh-keygen allowed_signers file (same effect, several keys)
    bundle_path: Path | None = None  # bundles the service may install (None: none, over the API)
    backups_to_keep: int = 5
    playbook_timeout_minutes: float = 30
    fleet_strategy: str = "linear"  # Ansible strategy of fleet runs: linear, or mitogen_linear (opt-in)
    serve_host: str = "127.0.0.1"
    serve_port: int = 8765
    serve_token: str | None = field(default=None, repr=False)
    auto_update: str = "off"
    update_window: str = ""
    notify_urls: tuple[str, ...] = field(default=(), repr=False)  # apprise URLs carry passwords
    components: Mapping[str, ComponentSpec] = field(default_factory=dict)
    source: str = "built-in defaults"

    def component(self, name: str) -> ComponentSpec:
        try:
            return self.components[name]
        except KeyError:
            known = ", ".join(self.components)
            raise ConfigError(f"unknown component {name!r} (known: {known})") from None


# --- value parsers: each takes the raw string and returns the typed value ---------


def _whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """A whole number from `low` to `high`: the bound keeps a stray digit from meaning
    "never", or from overflowing a timer or a date."""
    rule = f"must be {what} from {low} to {high}"

    def parse(raw: str) -> int:
        text = raw.strip()
        if not re.fullmatch(r"-?[0-9]{1,18}", text) or not low <= int(text) <= high:
            raise ValueError(rule)
        return int(text)

    return parse


MAX_TIMEOUT_SECONDS = 24 * 3600
MAX_RUN_MINUTES = 24 * 60
MAX_MB = 64 * 1024  # 64 GiB: far beyond any release a device keeps


def _timeout_seconds(raw: str) -> float:
    """A deadline: positive and finite (`inf` and `nan` parse as floats but bound nothing)."""
    value = float(raw.strip())
    if not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS}")
    return value


def _run_minutes(raw: str) -> float:
    """How long a playbook run may take: positive and finite, at most a day."""
    value = float(raw.strip())
    if not 0 < value <= MAX_RUN_MINUTES:
        raise ValueError(f"must be a number of minutes above 0 and at most {MAX_RUN_MINUTES}")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in configparser.ConfigParser.BOOLEAN_STATES:
        raise ValueError("must be true or false")
    return configparser.ConfigParser.BOOLEAN_STATES[lowered]


def _absolute_path(raw: str) -> Path:
    path = Path(raw.strip())
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


def _http_url(raw: str) -> str:
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise SecretValueError("must not carry a user name or password: they would show wherever the URL is named")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return url


def _api_url(raw: str) -> str:
    """https, or plain http only on loopback (a test or demo server on this machine)."""
    url = _http_url(raw)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise ValueError("must use https (plain http is allowed only for a loopback test server)")
    return url


def _optional_http_url(raw: str) -> str:
    return _http_url(raw) if raw.strip() else ""


def _text(raw: str) -> str:
    return raw.strip()


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not pattern.fullmatch(value):
            raise ValueError(f"is not a valid {what}")
        return value

    return parse


def _optional_matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    required = _matching(pattern, what)
    return lambda raw: required(raw) if raw.strip() else ""


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return value

    return parse


def _argv(raw: str) -> tuple[str, ...]:
    argv = tuple(shlex.split(raw))
    if not argv:
        raise ValueError("must name a command")
    if not Path(argv[0]).is_absolute() and "/" in argv[0]:
        raise ValueError("the program must be an absolute path or a bare command name")
    return argv


def _optional_argv(raw: str) -> tuple[str, ...]:
    return tuple(shlex.split(raw))


class SecretValueError(ValueError):
    """A bad value that must not be quoted back (it may hold a password)."""


def _token(raw: str) -> str | None:
    """A bearer token; a bad one is described, never quoted."""
    value = raw.strip()
    problem = token_problem(value) if value else None
    if problem:
        raise SecretValueError(problem)
    return value or None


def _update_window(raw: str) -> str:
    from .service.policy import parse_window  # policy is pure and imports nothing heavy

    text = raw.strip()
    parse_window(text)  # raises ValueError naming what is wrong
    return text


def _notify_urls(raw: str) -> tuple[str, ...]:
    urls = tuple(part for part in re.split(r"[\s,]+", raw.strip()) if part)
    for url in urls:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", url):
            # Never echo the URL: apprise URLs carry passwords and tokens.
            raise SecretValueError(f"entry {urls.index(url) + 1} is not an apprise URL (scheme://...)")
    return urls


SSH_PUBLIC_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x20-\x7e]{0,200})?$"
)


def _ssh_public_key(raw: str) -> str | None:
    value = raw.strip()
    if value and not SSH_PUBLIC_KEY.fullmatch(value):
        raise ValueError("is not one OpenSSH public key line (e.g. 'ssh-ed25519 AAAA... comment')")
    return value or None


def _optional_absolute_path(raw: str) -> Path | None:
    return _absolute_path(raw) if raw.strip() else None


# config key -> (Settings attribute, parser)
UPDATER_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "updateCheckIntervalHours": ("update_check_interval_hours", _whole_number(1, 24 * 365, "a whole number of hours")),
    "dockerComposePath": ("docker_compose_path", _absolute_path),
    "coreInstallPath": ("core_install_path", _absolute_path),
    "backupPath": ("backup_path", _absolute_path),
    "githubAccount": ("github_account", _matching(re.compile(r"^[A-Za-z0-9-]{1,39}$"), "GitHub account")),
    "githubApiUrl": ("github_api_url", _api_url),
    "githubToken": ("github_token", _token),
    "includePrerelease": ("include_prerelease", _bool),
    "statePath": ("state_path", _absolute_path),
    "initialCheckDelayMinutes": ("initial_check_delay_minutes", _whole_number(0, 24 * 60, "a whole number of minutes")),
    "httpTimeoutSeconds": ("http_timeout_seconds", _timeout_seconds),
    "downloadTimeoutSeconds": ("download_timeout_seconds", _timeout_seconds),
    "composeCommand": ("compose_command", _optional_argv),
    "composeProject": ("compose_project", _optional_matching(COMPOSE_PROJECT, "compose project name")),
    "maxDownloadMb": ("max_download_mb", _whole_number(1, MAX_MB, "a whole number of MB")),
    "maxExtractMb": ("max_extract_mb", _whole_number(1, MAX_MB, "a whole number of MB")),
    "signingPublicKey": ("signing_public_key", _ssh_public_key),
    "allowedSigners": ("allowed_signers", _optional_absolute_path),
    "bundlePath": ("bundle_path", _optional_absolute_path),
    "backupsToKeep": ("backups_to_keep", _whole_number(1, 100, "a whole number")),
    "playbookTimeoutMinutes": ("playbook_timeout_minutes", _run_minutes),
    "fleetStrategy": ("fleet_strategy", _one_of(FLEET_STRATEGIES)),
    "serveHost": ("serve_host", _text),
    "servePort": ("serve_port", _whole_number(1, 65535, "a TCP port")),
    "serveToken": ("serve_token", _token),
    "autoUpdate": ("auto_update", _one_of(AUTO_UPDATE_LEVELS)),
    "updateWindow": ("update_window", _update_window),
    "notifyUrls": ("notify_urls", _notify_urls),
}

# component key -> (ComponentSpec attribute, parser, types it applies to)
COMPONENT_KEYS: dict[str, tuple[str, Callable[[str], Any], tuple[str, ...]]] = {
    "type": ("type", _one_of(COMPONENT_TYPES), COMPONENT_TYPES),
    "repo": ("repo", _matching(REPO, "GitHub repository (owner/name)"), COMPONENT_TYPES),
    "healthUrl": ("health_url", _optional_http_url, COMPONENT_TYPES),
    "healthTimeoutSeconds": (
        "health_timeout_seconds",
        _whole_number(1, 3600, "a whole number of seconds"),
        COMPONENT_TYPES,
    ),
    "selfHosted": ("self_hosted", _bool, COMPONENT_TYPES),
    "serviceName": ("service_name", _matching(SERVICE_NAME, "service name"), ("python_app",)),
    "serviceManager": ("service_manager", _one_of(SERVICE_MANAGERS), ("python_app",)),
    "startCommand": ("start_command", _argv, ("python_app",)),
    "stopCommand": ("stop_command", _argv, ("python_app",)),
    "statusCommand": ("status_command", _argv, ("python_app",)),
    "installPath": ("install_path", _absolute_path, ("python_app",)),
    "python": (
        "python",
        _matching(re.compile(r"^(/[A-Za-z0-9_.+/-]+|python3[0-9.]*)$"), "python interpreter"),
        ("python_app",),
    ),
    "pipExtraArgs": ("pip_extra_args", _optional_argv, ("python_app",)),
    "settleSeconds": ("settle_seconds", _whole_number(1, 600, "a whole number of seconds"), ("python_app",)),
    "assetPattern": ("asset_pattern", _matching(ASSET_PATTERN, "asset pattern with {version}"), ("python_app",)),
    "service": ("service", _matching(SERVICE_NAME, "compose service name"), ("container",)),
    "image": ("image", _matching(IMAGE, "image reference without tag"), ("container",)),
}


def builtin_components(account: str, core_install_path: Path) -> dict[str, dict[str, str]]:
    """Raw settings of the three DuneBugger components, before any override."""
    return {
        "core": {"type": "python_app", "repo": f"{account}/dunebugger", "installPath": str(core_install_path)},
        "scheduler": {
            "type": "container",
            "repo": f"{account}/dunebugger-scheduler",
            "service": "scheduler",
            "image": f"ghcr.io/{account.lower()}/dunebugger-scheduler",
        },
        "remote": {
            "type": "container",
            "repo": f"{account}/dunebugger-remote",
            "service": "remote",
            "selfHosted": "true",
            "image": f"ghcr.io/{account.lower()}/dunebugger-remote",
        },
    }


def env_name(key: str) -> str:
    """`githubApiUrl` -> `UPDATER_GITHUBAPIURL`."""
    return f"UPDATER_{key.upper()}"


def find_config_file(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: --config, else $DUNEBUGGER_CONFIG, else config/dunebugger.conf if present."""
    chosen = explicit or environ.get("DUNEBUGGER_CONFIG")
    if chosen:
        path = Path(chosen)
        try:
            is_dir = stat.S_ISDIR(path.stat().st_mode)
        except FileNotFoundError:
            where = "--config" if explicit else "$DUNEBUGGER_CONFIG"
            raise ConfigError(
                f"config file {path} does not exist: check {where}, or leave it out to use the defaults"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {os_reason(exc)}") from None
        if is_dir:
            raise ConfigError(
                f"config file {path} is a directory: name the INI file in it (e.g. {path / 'dunebugger.conf'})"
            )
        return path
    return next((p for p in DEFAULT_CONFIG_CANDIDATES if p.is_file()), None)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the config file (optional) and the environment into checked Settings."""
    environ = os.environ if environ is None else environ
    config_file = find_config_file(path, environ)
    parser = _read_ini(config_file)
    source = str(config_file) if config_file else "built-in defaults"
    _check_section_names(parser, source)

    values = _updater_values(parser, environ, source)
    components = _components(
        parser,
        values.get("github_account", Settings.github_account),
        values.get("core_install_path", Settings.core_install_path),
        source,
    )
    return Settings(**values, components=components, source=source)


def _read_ini(path: Path | None) -> configparser.ConfigParser:
    # Keys keep their case so error messages quote them as the user wrote them.
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    if path is not None:
        try:
            parser.read_string(_config_text(path), source=str(path))
        except configparser.Error as exc:
            raise ConfigError(f"{path}: cannot parse: {_ini_problem(exc)}") from None
    return parser


def _config_text(path: Path) -> str:
    """The config file's text: a regular file of at most MAX_CONFIG_BYTES, in UTF-8."""
    try:
        data = read_capped(path, MAX_CONFIG_BYTES)
    except (NotRegularFile, FileTooLarge) as exc:
        raise ConfigError(f"config file {path}: {exc}: name the INI file with --config") from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read: {os_reason(exc)}: run as a user who may read it, or name another file with --config"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: cannot parse: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}): save it as UTF-8 text"
        ) from None


def _ini_problem(exc: configparser.Error) -> str:
    """configparser's message in one line, with the fix for the usual mistakes."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: a key before any section: put [{UPDATER_SECTION}] on the line above the keys"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(number) for number, _ in exc.errors[:5])
        return f"line {lines} is neither a [section] nor 'key = value'"
    return " ".join(str(exc).split())


def _check_section_names(parser: configparser.ConfigParser, source: str) -> None:
    """Sections of other programs sharing the file are ignored, but not one that is meant
    for the updater and spelled in another case (`[UPDATER]`, `[component:core]`, a
    `[CORE]` holding component keys): it would silently do nothing."""
    prefix = COMPONENT_SECTION_PREFIX
    built_in = set(builtin_components(Settings.github_account, Settings.core_install_path))
    configured = {section[len(prefix) :].strip() for section in parser.sections() if section.startswith(prefix)}
    components = built_in | configured
    for section in parser.sections():
        meant = _meant_section(section, set(parser.options(section)), components)
        if meant:
            raise ConfigError(
                f"{source}: section [{section}] would be ignored: did you mean [{meant}]? "
                "(section names are case-sensitive)"
            )


def _meant_section(section: str, keys: set[str], components: set[str]) -> str | None:
    """The updater's section that `section` was meant to be, or None."""
    folded, prefix = section.strip().casefold(), COMPONENT_SECTION_PREFIX
    if folded == UPDATER_SECTION.casefold():
        return None if section == UPDATER_SECTION else UPDATER_SECTION
    if folded.startswith(prefix.casefold()):
        return None if section.startswith(prefix) else prefix + folded[len(prefix) :].strip()
    if folded in components and keys & set(COMPONENT_KEYS):
        return prefix + folded
    return None


def _updater_values(parser: configparser.ConfigParser, environ: Mapping[str, str], source: str) -> dict[str, Any]:
    by_lower = {key.lower(): key for key in UPDATER_KEYS}
    raw: dict[str, tuple[str, str]] = {}  # canonical key -> (value, where it came from)
    if parser.has_section(UPDATER_SECTION):
        for key, value in parser.items(UPDATER_SECTION):
            canonical = by_lower.get(key.lower())
            if canonical is None:
                raise ConfigError(
                    f"{source}: [{UPDATER_SECTION}] unknown key {key!r} (known: {', '.join(UPDATER_KEYS)})"
                )
            raw[canonical] = (value, f"{source}: [{UPDATER_SECTION}] {canonical}")
    if "githubToken" not in raw and environ.get("GITHUB_TOKEN"):
        raw["githubToken"] = (environ["GITHUB_TOKEN"], "environment GITHUB_TOKEN")
    for key in UPDATER_KEYS:
        if env_name(key) in environ:
            raw[key] = (environ[env_name(key)], f"environment {env_name(key)}")

    values: dict[str, Any] = {}
    for key, (value, where) in raw.items():
        attribute, parse = UPDATER_KEYS[key]
        values[attribute] = _parse(parse, value, where)
    return values


def _components(
    parser: configparser.ConfigParser, account: str, core_install_path: Path, source: str
) -> dict[str, ComponentSpec]:
    raw = builtin_components(account, core_install_path)
    origin = dict.fromkeys(raw, "built-in component")
    for section in parser.sections():
        if not section.startswith(COMPONENT_SECTION_PREFIX):
            continue
        name = section[len(COMPONENT_SECTION_PREFIX) :].strip()
        where = f"{source}: [{section}]"
        if not COMPONENT_NAME.fullmatch(name):
            raise ConfigError(f"{where}: component name {name!r} must match {COMPONENT_NAME.pattern}")
        for key in parser.options(section):
            if key not in COMPONENT_KEYS:
                raise ConfigError(f"{where} unknown key {key!r} (known: {', '.join(COMPONENT_KEYS)})")
        overrides = dict(parser.items(section))
        if name not in raw and "type" not in overrides:
            raise ConfigError(f"{where}: a new component needs a 'type' ({' or '.join(COMPONENT_TYPES)})")
        if name not in raw and "repo" not in overrides:
            raise ConfigError(f"{where}: a new component needs a 'repo' (owner/name)")
        raw[name] = {**raw.get(name, {}), **overrides}
        origin[name] = where
    return {name: _component(name, values, origin[name]) for name, values in raw.items()}


def _component(name: str, raw: dict[str, str], where: str) -> ComponentSpec:
    kind = _parse(COMPONENT_KEYS["type"][1], raw["type"], f"{where} type")
    values: dict[str, Any] = {"name": name, "type": kind}
    for key, value in raw.items():
        attribute, parse, applies_to = COMPONENT_KEYS[key]
        if kind not in applies_to:
            raise ConfigError(f"{where} key {key!r} does not apply to a {kind} component")
        values[attribute] = _parse(parse, value, f"{where} {key}")
    if kind == "container":
        values.setdefault("service", name)
        if "image" not in values:
            raise ConfigError(f"{where}: a container component needs an 'image'")
    elif "install_path" not in values:
        raise ConfigError(f"{where}: a python_app component needs an 'installPath'")
    spec = ComponentSpec(**values)
    if spec.type == "python_app" and spec.service_manager == "command":
        missing = [k for k in ("startCommand", "stopCommand", "statusCommand") if k not in raw]
        if missing:
            raise ConfigError(f"{where}: serviceManager = command needs {', '.join(missing)}")
    return spec


def _parse(parse: Callable[[str], Any], value: str, where: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith("could not convert"):
            reason = "must be a number"
        if isinstance(exc, SecretValueError):
            raise ConfigError(f"{where}: {reason}") from None
        raise ConfigError(f"{where}: {_shown(value.strip())} {reason}") from None


def _shown(value: str) -> str:
    """A value as a message quotes it: one line, however long the value."""
    return repr(value if len(value) <= 60 else value[:57] + "...")

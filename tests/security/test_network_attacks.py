"""Hostile peers on the wire: answers that inflate to gigabytes (`Content-Encoding`),
answers that trickle in for ever, and a token that must stay with the API's own
origin. Real loopback servers (FakeGitHub, a second one on another port, one over
TLS), the real updater and CLI; memory peaks are measured in child processes."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import hashlib
import ipaddress
import json
import os
import ssl
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo import CORE_REPO, DemoDevice, free_port
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.demo.sandbox import releases
from support.attack_kit import ASSET, assert_refused, attempt, publish_raw
from support.cli import cli_argv, cli_environment, run_cli_json
from support.hostile_github import HostileGitHub

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
LATEST = f"/repos/{CORE_REPO}/releases/latest"
MANIFEST = f"/repos/{CORE_REPO}/contents/update-manifest.yaml"
ASSET_PATH = f"/{CORE_REPO}/releases/download/v1.1.0/{ASSET}"
TOKEN = "ghp_token_for_the_api_origin_only"
PEAK_GROWTH_CAP = 64 * MIB


# --- answers that inflate to gigabytes ------------------------------------------------


def zeros_compressed(total: int, wbits: int) -> bytes:
    """`total` zeros as gzip (wbits 31) or zlib-wrapped deflate (15), about a thousand
    times smaller, built in a fraction of a second: a fully flushed 64 MiB segment does
    not depend on what came before, so one is repeated. (The trailer checks only the
    first two segments; a reader that stops at its cap never gets there.)"""
    block = bytes(64 * MIB)
    stream = zlib.compressobj(9, zlib.DEFLATED, wbits)
    first = stream.compress(block) + stream.flush(zlib.Z_FULL_FLUSH)
    again = stream.compress(block) + stream.flush(zlib.Z_FULL_FLUSH)
    return first + again * (total // len(block) - 1) + stream.flush()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """Content-Encoding -> a body that decodes (or would) to 4 GiB."""
    gzipped = zeros_compressed(4 * 1024 * MIB, 31)
    return {
        "gzip": gzipped,                                         # 4 MiB on the wire
        "deflate": zeros_compressed(4 * 1024 * MIB, 15),
        "gzip, gzip": gzip.compress(gzipped),                    # 9 KB on the wire
        "identity, gzip": gzipped,                               # identity is no layer
        "br": gzipped,                                           # never asked for: refused unread
        "x-foo": gzipped,
    }


def encoding_refusal(encoding: str, cap: int) -> str:
    if encoding.endswith("gzip, gzip"):
        return "has stacked Content-Encoding 'gzip, gzip'"
    if encoding in ("br", "x-foo"):
        return f"has the unsupported Content-Encoding {encoding!r}"
    return f"is larger than the cap of {cap} bytes"


TARGETS = {  # what is attacked -> (path, content type, cap on decoded bytes)
    "check": (LATEST, "application/json", 4 * MIB),
    "manifest": (MANIFEST, "application/vnd.github.raw+json", 256 * 1024),
    "download": (ASSET_PATH, "application/octet-stream", 8 * MIB),
}
SMALL_DOWNLOADS = {"UPDATER_MAXDOWNLOADMB": "8"}


def serve_bomb(device: DemoDevice, target: str, encoding: str, body: bytes) -> str:
    """Publish a good release, then make `target` answer with `body`; its URL."""
    publish_raw(device, "v1.1.0")
    path, content_type, _ = TARGETS[target]
    device.github.canned(path, 200, {"Content-Type": content_type, "Content-Encoding": encoding}, body)
    return device.github.url + path


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "gzip, gzip", "identity, gzip", "br", "x-foo"])
@pytest.mark.parametrize("target", TARGETS)
async def test_encoded_answer_is_capped_as_it_inflates_or_refused(device, bombs, target, encoding):
    url = serve_bomb(device, target, encoding, bombs[encoding])
    expect = encoding_refusal(encoding, TARGETS[target][2])
    if target == "check":
        status = (await ComponentUpdater(device.settings()).check_updates(force=True))["core"]
        assert status.error and expect in status.error and url in status.error, status.error
    else:
        await assert_refused(device, (expect, url), environ=SMALL_DOWNLOADS)


def peak_rss_of(argv: list[str], environ: dict[str, str]) -> tuple[int, dict]:
    """Run the CLI in a child; its peak resident memory (bytes) and its JSON answer."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env=cli_environment(environ))
    assert child.stdout is not None
    with child.stdout:
        output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, json.loads(output)


def core_outcome(answer: dict) -> str:
    """What a CLI answer says about core: its check error, or its update message."""
    body = answer["body"]
    return body["components"]["core"].get("error") or "" if "components" in body else body["message"]


@pytest.mark.parametrize("target", TARGETS)
def test_memory_stays_flat_while_a_bomb_is_refused(device, bombs, target, record_property):
    """The peak memory of a CLI run that meets a 4 GiB bomb stays within PEAK_GROWTH_CAP
    of the same run against an honest answer: nothing piles up before a cap is hit."""
    verb = ("check", "--force", "--json") if target == "check" else ("update", "core", "--dry-run", "--json")
    publish_raw(device, "v1.1.0")
    honest, answer = peak_rss_of(cli_argv(*verb, config=device.config), SMALL_DOWNLOADS)
    assert core_outcome(answer) == "" or core_outcome(answer).startswith("Dry run: would update core"), answer
    for encoding in ("gzip", "gzip, gzip"):
        device.github.reset()
        url = serve_bomb(device, target, encoding, bombs[encoding])
        peak, answer = peak_rss_of(cli_argv(*verb, config=device.config), SMALL_DOWNLOADS)
        record_property(f"{target} {encoding}: peak MiB (honest run)", f"{peak / MIB:.1f} ({honest / MIB:.1f})")
        outcome = core_outcome(answer)
        assert url in outcome and encoding_refusal(encoding, TARGETS[target][2]) in outcome, outcome
        assert peak - honest < PEAK_GROWTH_CAP, f"{target} {encoding}: peak {peak / MIB:.0f} MiB, honest {honest / MIB:.0f} MiB"


def peak_rss_now(pid: int) -> int:
    """VmHWM: the most resident memory the process has had so far, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


async def core_error_in_versions(port: int, process: subprocess.Popen, ask_check: bool = False,
                                 naming: str = "") -> str:
    """Wait for the service to answer get_versions with a core check error that says
    `naming` (a check already under way may answer a requested one with its older
    result, so a requested check is asked again until it does); the error."""
    async with asyncio.timeout(60):
        while True:
            assert process.poll() is None, "the service died"
            try:
                async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                    if ask_check:
                        await ws.send(json.dumps({"subject": "updater.check_updates", "body": {"force": True}}))
                        while json.loads(await ws.recv())["subject"] != "update_check_result":
                            pass
                    await ws.send(json.dumps({"subject": "updater.get_versions"}))
                    core = json.loads(await ws.recv())["body"]["components"]["core"]
                    if core.get("error") and naming in core["error"]:
                        return core["error"]
            except OSError:
                pass  # not listening yet
            await asyncio.sleep(0.2)


async def test_the_service_survives_a_bomb_in_its_periodic_check(device, bombs, record_property):
    """`serve` meets a stacked bomb in its first periodic check, then a 4 GiB single
    layer in a requested one: both are refused, the process keeps running and answering,
    and its memory peak does not move."""
    stacked_url = serve_bomb(device, "check", "gzip, gzip", bombs["gzip, gzip"])
    config = device.home / "serve-bomb.conf"
    config.write_text(device.config.read_text().replace("[Updater]\n", "[Updater]\ninitialCheckDelayMinutes = 0\n", 1))
    port = free_port()
    service = subprocess.Popen(cli_argv("serve", "--port", str(port), config=config), env=cli_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        error = await core_error_in_versions(port, service, naming="stacked Content-Encoding")
        assert "stacked Content-Encoding 'gzip, gzip'" in error and stacked_url in error, error
        after_periodic = peak_rss_now(service.pid)
        device.github.reset()
        single_url = serve_bomb(device, "check", "gzip", bombs["gzip"])
        error = await core_error_in_versions(port, service, ask_check=True, naming="larger than the cap")
        assert "larger than the cap of 4194304 bytes" in error and single_url in error, error
        after_requested = peak_rss_now(service.pid)
        record_property("service peak MiB after each bomb", f"{after_periodic / MIB:.1f}, {after_requested / MIB:.1f}")
        assert after_requested - after_periodic < PEAK_GROWTH_CAP
        assert after_periodic < 200 * MIB, f"peak {after_periodic / MIB:.0f} MiB after the periodic check"
    finally:
        service.terminate()
        stderr = service.communicate(timeout=60)[1]
    assert service.returncode == 0 and "Traceback" not in stderr and "MemoryError" not in stderr, stderr


# --- answers that trickle in for ever -------------------------------------------------

TRICKLE_EVERY = 0.2  # seconds between two bytes: never long enough for a read timeout
SLACK = 1.5  # seconds a loaded test machine may add to a deadline


async def test_trickling_api_answer_ends_at_the_request_deadline(device, record_property):
    publish_raw(device, "v1.1.0", body="notes " * 1000)
    device.github.trickle(LATEST, TRICKLE_EVERY)
    updater = ComponentUpdater(device.settings({"UPDATER_HTTPTIMEOUTSECONDS": "1.5"}))
    started = time.monotonic()
    status = (await updater.check_updates(force=True))["core"]
    elapsed = time.monotonic() - started
    host = device.github.url.removeprefix("http://")
    assert f"no complete answer from {host} within 1.5 s (httpTimeoutSeconds)" in status.error, status.error
    record_property("check: elapsed s, deadline 1.5 s", f"{elapsed:.2f}")
    assert 1.5 <= elapsed < 1.5 + SLACK, elapsed


async def test_trickling_manifest_ends_at_the_request_deadline(device, record_property):
    publish_raw(device, "v1.1.0", manifest=b'version: "1.1.0"\ncomponent_type: "python_app"\n' + b"#" * 2000)
    device.github.trickle(MANIFEST, TRICKLE_EVERY)
    started = time.monotonic()
    await assert_refused(device, "within 1.5 s (httpTimeoutSeconds)", environ={"UPDATER_HTTPTIMEOUTSECONDS": "1.5"})
    elapsed = time.monotonic() - started
    record_property("manifest: elapsed s, deadline 1.5 s", f"{elapsed:.2f}")
    assert 1.5 <= elapsed < 1.5 + SLACK, elapsed


async def test_trickling_download_ends_at_the_download_deadline(device, record_property):
    publish_raw(device, "v1.1.0")
    device.github.trickle(ASSET_PATH, TRICKLE_EVERY)
    host = device.github.url.removeprefix("http://")
    started = time.monotonic()
    await assert_refused(device, f"no complete answer from {host} within 2 s (downloadTimeoutSeconds)",
                         environ={"UPDATER_DOWNLOADTIMEOUTSECONDS": "2", "UPDATER_HTTPTIMEOUTSECONDS": "1"})
    elapsed = time.monotonic() - started
    record_property("download: elapsed s, deadline 2 s", f"{elapsed:.2f}")
    assert 2 <= elapsed < 2 + SLACK, elapsed
    assert not list((device.state / "downloads").glob("*.partial")), "a cut download left bytes behind"


def test_cli_check_against_a_trickling_api_ends_at_the_deadline(device):
    publish_raw(device, "v1.1.0", body="notes " * 1000)
    device.github.trickle(LATEST, TRICKLE_EVERY)
    started = time.monotonic()
    _, answer = run_cli_json("check", "--force", config=device.config, env={"UPDATER_HTTPTIMEOUTSECONDS": "2"},
                             timeout=60)
    elapsed = time.monotonic() - started
    core = answer["body"]["components"]["core"]
    assert "within 2 s (httpTimeoutSeconds)" in core["error"], core
    assert elapsed < 2 + SLACK + 3, elapsed  # 3: the interpreter's start


# --- the token stays with the API's origin ----------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return releases.build_release(tmp_path_factory.mktemp("dist"), "1.1.0").read_bytes()


@pytest.fixture
def second_port() -> Iterator[FakeGitHub]:
    """Another listener on the API's host, on another port."""
    with FakeGitHub() as server:
        yield server


def authorizations(server: FakeGitHub) -> list[str | None]:
    return [request.headers.get("authorization") for request in server.requests]


def assert_token_stayed_home(device: DemoDevice, elsewhere: FakeGitHub) -> None:
    assert elsewhere.requests, "the second listener was never asked"
    assert authorizations(elsewhere) == [None] * len(elsewhere.requests), "the token left the API origin"
    api_requests = [r for r in device.github.requests if r.path.startswith("/repos/")]
    assert api_requests and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_requests)


async def test_asset_on_another_port_gets_no_token(device, archive, second_port):
    second_port.add_release(CORE_REPO, "v1.1.0", assets={ASSET: archive})
    publish_raw(device, "v1.1.0", archive=archive,
                asset_urls={ASSET: second_port.asset_url(CORE_REPO, "v1.1.0", ASSET)})
    result, _ = await attempt(device, environ={"UPDATER_GITHUBTOKEN": TOKEN})
    assert result.success and result.details["verified"], result.message
    assert_token_stayed_home(device, second_port)


async def test_manifest_artifact_on_another_port_gets_no_token(device, archive, second_port):
    second_port.add_release(CORE_REPO, "v1.1.0", assets={ASSET: archive})
    manifest = (
        'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n'
        '  - action: "download_artifact"\n'
        f'    url: "{second_port.asset_url(CORE_REPO, "v1.1.0", ASSET)}"\n'
        f'    checksum: "sha256:{hashlib.sha256(archive).hexdigest()}"\n'
    ).encode()
    publish_raw(device, "v1.1.0", archive=b"not the artifact", manifest=manifest)
    result, _ = await attempt(device, environ={"UPDATER_GITHUBTOKEN": TOKEN})
    assert result.success and result.manifest == "manifest used", result.message
    assert_token_stayed_home(device, second_port)


async def test_redirect_to_another_port_gets_no_token(device, archive, second_port):
    second_port.add_release(CORE_REPO, "v1.1.0", assets={ASSET: archive})
    publish_raw(device, "v1.1.0", archive=archive)
    device.github.redirect(ASSET_PATH, second_port.asset_url(CORE_REPO, "v1.1.0", ASSET))
    result, _ = await attempt(device, environ={"UPDATER_GITHUBTOKEN": TOKEN})
    assert result.success, result.message
    first_hop = next(r for r in device.github.requests if r.path == ASSET_PATH)
    assert first_hop.headers.get("authorization") == f"Bearer {TOKEN}", "the API origin itself lost the token"
    assert_token_stayed_home(device, second_port)


def self_signed_tls(directory: Path, host: str = "127.0.0.1") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A certificate for `host`: the server's context, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(pem)
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return server, ssl.create_default_context(cadata=pem.decode())


async def test_asset_over_https_on_the_api_host_gets_no_token(device, archive, tmp_path):
    """Same host, another scheme (and port): https://127.0.0.1 is not http://127.0.0.1."""
    server_tls, client_tls = self_signed_tls(tmp_path)
    with HostileGitHub(tls=server_tls) as secure:
        secure.add_release(CORE_REPO, "v1.1.0", assets={ASSET: archive})
        publish_raw(device, "v1.1.0", archive=archive, asset_urls={ASSET: secure.asset_url(CORE_REPO, "v1.1.0", ASSET)})
        result, _ = await attempt(device, environ={"UPDATER_GITHUBTOKEN": TOKEN},
                                  transport=httpx.AsyncHTTPTransport(verify=client_tls))
        assert result.success and result.details["verified"], result.message
        assert secure.url.startswith("https://127.0.0.1:")
        assert_token_stayed_home(device, secure)

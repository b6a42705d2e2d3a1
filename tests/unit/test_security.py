"""The Origin and token rules of the service, as pure functions."""

import pytest

from dunebugger_updater.addresses import is_loopback
from dunebugger_updater.errors import ConfigError
from dunebugger_updater.service.security import AccessRules


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("dunebugger.local", False),
])
def test_loopback_binds(host, expected):
    assert is_loopback(host) is expected


def test_a_non_loopback_bind_needs_a_token():
    with pytest.raises(ConfigError, match="serveHost '0.0.0.0' is not a loopback address: set serveToken"):
        AccessRules("0.0.0.0", 8765, None)
    assert AccessRules("0.0.0.0", 8765, "s3cret").token_required
    assert not AccessRules("127.0.0.1", 8765, None).token_required


@pytest.mark.parametrize(("origin", "allowed"), [
    (None, True),                             # not a browser
    ("http://127.0.0.1:8765", True),
    ("http://localhost:8765", True),
    ("http://[::1]:8765", True),
    ("http://127.0.0.1:8766", False),         # another local service's page
    ("https://127.0.0.1:8765", False),
    ("http://evil.example:8765", False),      # DNS rebinding to 127.0.0.1
    ("https://evil.example", False),
    ("null", False),                          # sandboxed iframe, file://
    ("http://127.0.0.1:8765/path", False),
    ("http://127.0.0.1:notaport", False),
])
def test_origins_on_loopback(origin, allowed):
    assert AccessRules("127.0.0.1", 8765, None).origin_allowed(origin, "127.0.0.1") is allowed


def test_origins_on_a_network_address():
    rules = AccessRules("0.0.0.0", 8765, "s3cret")
    assert rules.origin_allowed("http://192.168.1.20:8765", local_ip="192.168.1.20")
    assert not rules.origin_allowed("http://192.168.1.21:8765", local_ip="192.168.1.20")
    assert not rules.origin_allowed("http://localhost:8765", local_ip="192.168.1.20")
    assert not rules.origin_allowed("http://0.0.0.0:8765", local_ip="192.168.1.20")
    named = AccessRules("dunebugger.local", 8765, "s3cret")
    assert named.origin_allowed("http://dunebugger.local:8765", local_ip="192.168.1.20")


def test_tokens():
    rules = AccessRules("0.0.0.0", 8765, "s3cret")
    assert rules.token_matches("s3cret") and not rules.token_matches("s3cre") and not rules.token_matches(None)
    assert rules.bearer_matches("Bearer s3cret") and rules.bearer_matches("bearer  s3cret")
    assert not rules.bearer_matches("Basic s3cret") and not rules.bearer_matches("Bearer wrong")
    assert not AccessRules("127.0.0.1", 8765, None).token_matches("")


@pytest.mark.parametrize("presented", ["\ud800", "s3cret\udfff", "\udcff", "s3cr\xe9t", "\x00", 42, ["s3cret"]])
def test_odd_tokens_are_wrong_tokens_not_errors(presented):
    rules = AccessRules("0.0.0.0", 8765, "s3cret")
    assert not rules.token_matches(presented)
    if isinstance(presented, str):
        assert not rules.bearer_matches(f"Bearer {presented}")

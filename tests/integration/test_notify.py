"""Notifications through real apprise (in its child process) to a local SMTP server and
a local webhook; failures are logged and never raise."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from dunebugger_updater.demo import free_port
from dunebugger_updater.results import UpdateResult
from dunebugger_updater.service.notify import Notifier
from support.receivers import MailBox, Webhook

pytestmark = pytest.mark.integration


async def test_mail_and_webhook_receive_an_update_result():
    with MailBox() as mailbox, Webhook() as webhook:
        notifier = Notifier([mailbox.url(), webhook.url()], device="pi-kitchen")
        result = UpdateResult("core", False, "Rolled back to 1.1.0: health check failed", "rolled_back",
                              from_version="1.1.0", to_version="1.2.0", run_id="r-42")
        notifier.update_finished(result)
        await notifier.drain()
    assert webhook.bodies[0]["title"] == "pi-kitchen: core update to 1.2.0 failed and was rolled back"
    assert webhook.bodies[0]["type"] == "warning" and "health check failed" in webhook.bodies[0]["message"]
    recipients, mail = mailbox.messages[0]
    assert recipients == ["ops@example.com"]
    assert "Subject: pi-kitchen: core update to 1.2.0 failed and was rolled back" in mail
    assert "run r-42" in mail


async def test_undeliverable_notifications_are_logged_and_never_block(caplog):
    caplog.set_level(logging.INFO, logger="dunebugger_updater.service.notify")
    dead = free_port()  # nothing listens there
    notifier = Notifier([f"json://127.0.0.1:{dead}/hook"], timeout=20)
    started = time.monotonic()
    notifier.send("title", "body")  # fire and forget: returns at once
    assert time.monotonic() - started < 0.1
    await notifier.drain()
    assert "notification 'title' not delivered" in caplog.text

    assert await Notifier(["nosuchscheme://x"]).deliver("t", "b") is False
    assert "not a URL apprise understands" in caplog.text


async def test_a_hung_receiver_is_cut_off_by_the_time_limit(caplog):
    import socket

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        notifier = Notifier([f"json://127.0.0.1:{silent.getsockname()[1]}/hook"], timeout=3)
        assert await asyncio.wait_for(notifier.deliver("slow", "body"), 10) is False
    assert "no answer within 3 s" in caplog.text

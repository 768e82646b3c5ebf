"""The bounded pool for password hashing (gateway/password_checks.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import argon2
import pytest

from gateway import passwords
from gateway.errors import GatewayError
from gateway.metrics import Metrics
from gateway.password_checks import PasswordChecks


async def test_past_the_threads_and_the_queue_a_check_is_refused_at_once() -> None:
    metrics = Metrics()
    checks = PasswordChecks(workers=2, queue=3, metrics=metrics)
    gate = threading.Event()
    try:
        waiting = [asyncio.ensure_future(checks.run(gate.wait)) for _ in range(5)]
        await asyncio.sleep(0.05)
        with pytest.raises(GatewayError) as exc:
            await checks.run(lambda: True)
        assert exc.value.status == 503 and exc.value.reason == "password_checks_busy"
        assert exc.value.headers["Retry-After"] == "2"
        assert metrics.registry.get_sample_value("upload_gateway_password_checks_pending") == 5
        assert metrics.registry.get_sample_value("upload_gateway_password_checks_refused_total") == 1
        gate.set()
        assert await asyncio.gather(*waiting) == [True] * 5
        await asyncio.sleep(0.01)  # the places come back through the loop
        assert await checks.run(lambda: "room again") == "room again"
    finally:
        gate.set()
        checks.close()


async def test_a_caller_that_stops_waiting_keeps_its_place_until_the_work_ends() -> None:
    """Otherwise clients that hang up at once would start checks without bound."""
    checks = PasswordChecks(workers=1, queue=0, metrics=Metrics())
    gate = threading.Event()
    try:
        task = asyncio.ensure_future(checks.run(gate.wait))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.01)
        with pytest.raises(GatewayError):
            await checks.run(lambda: True)
        gate.set()
        await asyncio.sleep(0.05)
        assert await checks.run(lambda: True)
    finally:
        gate.set()
        checks.close()


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
async def test_hashing_threads_yield_the_cpu_to_the_event_loop() -> None:
    checks = PasswordChecks(workers=1, queue=0, metrics=Metrics())
    try:
        niceness = await checks.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    finally:
        checks.close()
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 10)


def test_an_unknown_user_costs_as_much_as_a_wrong_password() -> None:
    assert argon2.extract_parameters(passwords._DUMMY_HASH) == argon2.extract_parameters(passwords.hash_password("x"))

"""The per-address connection cap and the slow-client keys of the configuration (no sockets: see
tests/e2e/test_slow_clients.py for the gateway under attack)."""

from __future__ import annotations

import dataclasses
import http.client
import io

import pytest

from gateway.config import ConfigError, load_config
from gateway.connections import ConnectionGuard, refusal
from gateway.errors import GatewayError
from gateway.metrics import Metrics

LIMITS = load_config(None).limits.clients


def guard(cap: int = 2, trusted: tuple[str, ...] = ()) -> tuple[ConnectionGuard, Metrics]:
    metrics = Metrics()
    limits = dataclasses.replace(LIMITS, max_connections_per_address=cap)
    return ConnectionGuard(limits, trusted_proxies=trusted, metrics=metrics), metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        (("203.0.113.7", 50000), "203.0.113.7"),
        (("2001:db8:1:2:3:4:5:6", 50000, 0, 0), "2001:db8:1:2::/64"),  # one host may hold a whole /64
        (("2001:db8:1:2:ffff::1", 50000, 0, 0), "2001:db8:1:2::/64"),
        (("::ffff:203.0.113.7", 50000, 0, 0), "203.0.113.7"),  # a dual-stack socket's IPv4 client
        (("10.0.0.5", 443), None),  # a trusted proxy: exempt
        ("", None),  # a Unix socket
        (None, None),
    ],
)
def test_what_a_connection_counts_under(peer: object, key: str | None) -> None:
    assert guard(trusted=("10.0.0.0/8",))[0].address_of(peer) == key


def test_the_cap_holds_per_address_and_frees_on_close() -> None:
    connections, metrics = guard(cap=2)
    assert connections.admit("203.0.113.7") and connections.admit("203.0.113.7")
    assert not connections.admit("203.0.113.7")
    assert connections.admit("198.51.100.1"), "another address has its own count"
    assert sample(metrics, "upload_gateway_connections_refused_total", reason="too_many_connections") == 1
    assert sample(metrics, "upload_gateway_connections_open") == 3
    connections.release("203.0.113.7")
    assert connections.admit("203.0.113.7")
    for address in ("203.0.113.7", "203.0.113.7", "198.51.100.1"):
        connections.release(address)
    assert sample(metrics, "upload_gateway_connections_open") == 0
    assert connections._open == {}, "closed addresses leave nothing behind"


def test_exempt_connections_and_a_cap_of_zero_are_not_capped() -> None:
    exempt, _ = guard(cap=1)
    assert all(exempt.admit(None) for _ in range(100))
    uncapped, _ = guard(cap=0)
    assert all(uncapped.admit("203.0.113.7") for _ in range(100))


def test_the_refusal_is_a_whole_http_answer() -> None:
    connections, _ = guard(cap=64)
    raw = refusal(connections.too_many())
    answer = http.client.HTTPResponse(FakeSocket(raw))  # type: ignore[arg-type]
    answer.begin()
    body = answer.read().decode()
    assert answer.status == 429
    assert answer.reason.startswith("Too many connections from your address: at most 64 at once")
    assert answer.getheader("Connection") == "close" and answer.getheader("Retry-After") == "1"
    assert body == f"429 {answer.reason}\n"


def test_a_non_ascii_message_keeps_the_status_line_ascii() -> None:
    raw = refusal(GatewayError(408, "Zeit überschritten", "header_timeout"))
    assert raw.split(b"\r\n", 1)[0] == b"HTTP/1.1 408 Zeit ?berschritten"
    assert raw.endswith("408 Zeit überschritten\n".encode())


class FakeSocket:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self._data)


def test_the_keys_and_their_overrides() -> None:
    config = load_config(
        None,
        {
            "GATEWAY_UPSTREAM_BUFFER_UPLOADS": "true",
            "GATEWAY_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "0",
            "GATEWAY_LIMITS_MIN_UPLOAD_RATE": "2KiB",
            "GATEWAY_LIMITS_HEADER_TIMEOUT": "5s",
        },
    )
    assert config.upstream.buffer_uploads is True
    assert load_config(None).upstream.buffer_uploads is False
    limits = config.limits.clients
    assert (limits.max_connections_per_address, limits.min_upload_rate, limits.header_timeout) == (0, 2048, 5)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"GATEWAY_UPSTREAM_BUFFER_UPLOADS": "sometimes"}, "upstream.buffer_uploads"),
        ({"GATEWAY_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "-1"}, "limits.max_connections_per_address"),
        ({"GATEWAY_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "many"}, "limits.max_connections_per_address"),
        ({"GATEWAY_LIMITS_HEADER_TIMEOUT": "0s"}, "limits.header_timeout"),
        ({"GATEWAY_LIMITS_KEEPALIVE_TIMEOUT": "forever"}, "limits.keepalive_timeout"),
        ({"GATEWAY_LIMITS_MIN_UPLOAD_RATE": "slow"}, "limits.min_upload_rate"),
        ({"GATEWAY_LIMITS_UPLOAD_GRACE": "1h", "GATEWAY_LIMITS_UPLOAD_DEADLINE": "30m"}, "limits.upload_deadline"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env)
    assert key in str(caught.value) and "\n" not in str(caught.value)

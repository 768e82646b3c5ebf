"""The pace an upload body must keep (gateway.upload.pace), on a simulated clock, with the shipped defaults."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import ClientLimits, load_config
from gateway.errors import GatewayError
from gateway.upload.pace import Pace, duration_text, rate_text

DEFAULTS = load_config(None).limits.clients
MiB = 2**20


def run(pace: Pace, arrivals: list[tuple[float, int]], *, busy: float = 0.0) -> float:
    """Feed (seconds waited, bytes) reads, the gateway busy `busy` seconds after each; the wall time at the end.
    Raises the 408 the pace gives, checked as BodySource checks it: before each read, and while it waits."""
    now = 0.0
    for waited, size in arrivals:
        pace.check(now)
        patience = pace.patience(now)
        if patience < waited:
            pace.check(now + patience, patience)
            raise AssertionError("the read's patience ran out but check did not refuse")
        now += waited
        pace.arrived(waited, size)
        now += busy
    return now


def refusal(pace: Pace, arrivals: list[tuple[float, int]], **kwargs: float) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        run(pace, arrivals, **kwargs)
    return caught.value


def test_the_defaults() -> None:
    assert DEFAULTS == ClientLimits(
        header_timeout=10,
        keepalive_timeout=15,
        max_connections_per_address=64,
        upload_grace=30,
        min_upload_rate=8 * 1024,
        upload_deadline=3600,
    )


def test_a_trickle_of_a_byte_every_5_s_is_cut_after_the_grace_period() -> None:
    pace = Pace(DEFAULTS, started=0.0)
    error = refusal(pace, [(5.0, 1)] * 100)
    assert (error.status, error.reason) == (408, "upload_too_slow")
    assert error.message == (
        "Request timeout: the upload arrived slower than 8 KiB/s over 30 s; upload over a faster connection"
    )


def test_the_trickle_is_cut_when_the_grace_period_ends_not_later() -> None:
    pace = Pace(DEFAULTS, started=0.0)
    for _ in range(5):
        pace.arrived(5.0, 1)
    assert pace.patience(25.0) == pytest.approx(5.0)
    pace.check(29.9)
    with pytest.raises(GatewayError):
        pace.check(30.0, 5.0)


@pytest.mark.parametrize("rate", [2_000_000, 64 * 1024])
def test_100_mib_over_a_slow_link_arrives(rate: int) -> None:
    """2 MB/s (a slow uplink) and 64 KiB/s (26 minutes for 100 MiB) both pass the defaults."""
    chunk = 64 * 1024
    elapsed = run(Pace(DEFAULTS, started=0.0), [(chunk / rate, chunk)] * (100 * MiB // chunk))
    assert elapsed == pytest.approx(100 * MiB / rate)


def test_a_link_just_above_the_minimum_with_pauses_arrives() -> None:
    """9 KiB/s on average, in bursts: 10 s of silence, then 90 KiB, over and over."""
    run(Pace(DEFAULTS, started=0.0), [(10.0, 90 * 1024)] * 200)


def test_a_stall_after_a_fast_start_is_cut_once_the_window_is_empty() -> None:
    pace = Pace(DEFAULTS, started=0.0)
    for _ in range(40):
        pace.arrived(1.0, MiB)  # 40 MiB in 40 s
    # Nothing more: the window holds enough until the bytes of the last 30 s leave it, one second at a time;
    # what is left must stay at or above 8 KiB/s * 30 s = 240 KiB.
    patience = pace.patience(40.0)
    assert 29.0 < patience <= 30.0
    pace.check(40.0 + patience - 0.01, patience - 0.01)
    error = refusal(pace, [(patience + 0.01, 1)])
    assert error.reason == "upload_too_slow"


def test_time_the_gateway_spends_busy_is_not_the_clients() -> None:
    """The index takes the bytes slowly: the gateway reads a chunk every 2 s, and each is there at once."""
    elapsed = run(Pace(DEFAULTS, started=0.0), [(0.0, 256 * 1024)] * 100, busy=2.0)
    assert elapsed == pytest.approx(200.0)


def test_the_deadline_holds_whatever_the_rate() -> None:
    limits = dataclasses.replace(DEFAULTS, upload_deadline=60)
    error = refusal(Pace(limits, started=0.0), [(1.0, MiB)] * 100)
    assert (error.status, error.reason) == (408, "upload_deadline")
    assert "did not arrive within 1 min" in error.message


def test_a_client_sending_tiny_pieces_cannot_grow_the_record() -> None:
    pace = Pace(DEFAULTS, started=0.0)
    for _ in range(100_000):
        pace.arrived(0.001, 64)
    assert len(pace._arrivals) <= DEFAULTS.upload_grace + 1
    pace.check(100.0)  # 6.4 MB in 100 s


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30 s"), (60, "1 min"), (90, "90 s"), (3600, "1 h"), (7200, "2 h"), (5400, "90 min")]
)
def test_durations_read_as_written(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_rates_read_as_written() -> None:
    assert (rate_text(8192), rate_text(1000)) == ("8 KiB/s", "1000 bytes/s")

"""The pure pieces of `serve --workers N`: the restart backoff, how a worker's end is told, and the CLI's refusal
of a worker count below 1 (the supervisor itself runs in tests/e2e/test_workers.py, as real processes)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway import cli
from gateway.config import load_config
from gateway.workers import MAX_DELAY, describe, restart_delay


def test_a_worker_that_lived_long_is_replaced_at_once() -> None:
    assert restart_delay(0) == 0.0


def test_replacements_that_keep_ending_soon_wait_longer_each_time_up_to_a_bound() -> None:
    delays = [restart_delay(ends) for ends in range(1, 12)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays == sorted(delays)
    assert max(delays) == MAX_DELAY


def test_a_worker_end_is_told_by_signal_or_status() -> None:
    assert describe(signal.SIGKILL) == "was killed by SIGKILL"  # waitpid's status of a process killed by it
    assert describe(3 << 8) == "exited with status 3"
    assert describe(0) == "exited with status 0"


@pytest.mark.parametrize("count", ["0", "-2"])
def test_workers_below_one_is_one_line_and_status_1(
    count: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[store]\nurl = "sqlite:///gateway.db"\n[tokens]\nsecret_file = "secret.key"\n')
    assert cli.main(["--config", str(config), "serve", "--workers", count]) == 1
    err = capsys.readouterr().err
    assert err == f"upload-gateway: --workers {count}: give at least 1 (one process per core)\n"
    assert not (tmp_path / "gateway.db").exists()  # refused before anything was opened


def test_the_workers_count_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    assert load_config(None, {}).server.workers == 1
    assert load_config(None, {"GATEWAY_SERVER_WORKERS": "3"}).server.workers == 3
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\nworkers = 4\n")
    assert load_config(config, {}).server.workers == 4

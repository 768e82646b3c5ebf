"""The app's services through its life: set at start-up before any request (the account pages' session purge,
which starts with the sub-app, already reads them), kept after teardown, when only the resources are closed."""

from __future__ import annotations

import asyncio

from gateway.services import CONFIG, SERVICES, Services
from tests.harness.inprocess import InProcess


def _purger() -> asyncio.Task[object]:
    (task,) = [task for task in asyncio.all_tasks() if task.get_name() == "session-purge"]
    return task


async def test_the_services_are_set_at_start_up_and_kept_after_teardown(gateway: InProcess) -> None:
    app = gateway.client.app
    assert app is not None
    services = app[SERVICES]
    assert isinstance(services, Services) and services.config is app[CONFIG] is gateway.config
    purger = _purger()
    await asyncio.sleep(0.05)  # its first round has run
    assert not purger.done()
    assert (await gateway.client.get("/-/ready")).status == 200
    await gateway.client.close()
    assert purger.cancelled()
    assert app[SERVICES] is services

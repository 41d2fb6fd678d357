"""KillRuntime, StopRuntime and Sleep across a restart, on a real `durably serve --partitions 2` group.

The in-process modes of these scenarios are in test_conformance.py; here the whole process group is
SIGKILLed (a crash of the machine's server) or SIGTERMed (a stop) and started again on its data directory.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest

from .conftest import RETRY_ENV, Served, until

pytestmark = pytest.mark.system

KEYS = [f"key-{i}" for i in range(8)]  # eight keys: both partitions own some (checked below)


def _served(tmp_path: Path, replay: bool) -> Served:
    return Served(tmp_path / "data", tmp_path / "serve.log", 2, replay, RETRY_ENV)


@pytest.mark.parametrize("replay", [False, True], ids=["default", "always-replay"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "stop"])
async def test_runtime_restart_retains_the_state_in_every_partition(tmp_path: Path, replay: bool, how: int) -> None:
    from durably.protocol.ids import InvocationId
    from durably.server.partitions.map import PartitionMap

    owners = {PartitionMap(2, 0).owner(InvocationId.for_keyed("Counter", k)) for k in KEYS}
    assert owners == {0, 1}
    served = _served(tmp_path, replay).start()
    try:
        suite = served.suite()
        async with suite.ingress, suite.admin:
            for k in KEYS:
                assert await suite.ok(f"/Counter/{k}/add", 1) == {"oldValue": 0, "newValue": 1}
        served.stop(how)
        served.start()
        suite = served.suite()
        async with suite.ingress, suite.admin:
            for k in KEYS:
                assert await suite.ok(f"/Counter/{k}/add", 2) == {"oldValue": 1, "newValue": 3}
    except BaseException:
        print(served.output()[-20000:])
        raise
    finally:
        served.stop(signal.SIGKILL)


@pytest.mark.parametrize("replay", [False, True], ids=["default", "always-replay"])
async def test_sleeps_survive_a_crash_of_the_group(tmp_path: Path, replay: bool) -> None:
    served = _served(tmp_path, replay).start()
    try:
        suite = served.suite()
        started = time.monotonic()
        async with suite.ingress, suite.admin:
            # Plain invocations run where they land; sixteen of them land in both partitions.
            invs = [await suite.send("/TestUtilsService/sleepConcurrently", [400]) for _ in range(16)]

            async def journaled() -> bool:
                for inv in invs:
                    resp = await suite.admin.get(f"/invocations/{inv}")
                    if resp.status_code != 200 or len(resp.json()["journal"]) < 2:
                        return False
                return True

            await until(journaled, "every sleep to be journaled")
        served.stop(signal.SIGKILL)
        served.start()
        suite = served.suite()
        async with suite.ingress, suite.admin:
            answers = await asyncio.gather(*(suite.attach(inv) for inv in invs))
        assert [a.status_code for a in answers] == [200] * len(invs)
        assert time.monotonic() - started >= 0.4
    except BaseException:
        print(served.output()[-20000:])
        raise
    finally:
        served.stop(signal.SIGKILL)


async def test_a_send_to_every_key_gets_a_distinct_id_and_completes(tmp_path: Path) -> None:
    served = _served(tmp_path, False).start()
    try:
        suite = served.suite()
        async with suite.ingress, suite.admin:
            ids = [await suite.send(f"/Counter/{k}-{uuid.uuid4()}/add", 5) for k in KEYS]
            assert len(set(ids)) == len(ids)
            answers = await asyncio.gather(*(suite.attach(i) for i in ids))
            assert [a.json() for a in answers] == [{"oldValue": 0, "newValue": 5}] * len(ids)
    finally:
        served.stop(signal.SIGKILL)

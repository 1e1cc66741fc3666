"""A consumer process whose handler kills it (as a segfault or an OOM kill would): run by
test_parking's delivery-limit test, over and over, on the same message.

    python -m tests.messaging.crashing_consumer PARKED_FILE    (broker settings from the env)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from messaging import Broker, BrokerSettings, MessageContext, topology
from messaging.events import ImageUploaded

CRASH_EXIT_CODE = 17


async def main(parked_file: Path) -> None:
    async def crash(event: ImageUploaded, ctx: MessageContext) -> None:
        os._exit(CRASH_EXIT_CODE)  # no ack, no goodbye: the broker gets the message back

    async def on_park(event: ImageUploaded, ctx: MessageContext, error: str) -> None:
        await asyncio.to_thread(parked_file.write_text, f"{event.job_id}\n{error}\n")

    settings = BrokerSettings()  # from the environment
    async with Broker(settings, service="tests") as broker:
        await broker.subscribe(
            topology.RUNNER_UPLOADS, crash, ImageUploaded, on_park=on_park, record_retries=True
        )
        # Until the test stops it (SIGTERM): then the broker's close lets a parking that is
        # under way finish, as a service's shutdown does.
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))

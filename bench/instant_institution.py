"""The institution of the bare pipeline with Stopper's I/O (`bench/bare.py`, (c')): a minimal
aiohttp server in a process of its own that answers every stop request at once, reading the
body and nothing else, with a fixed answer in the shape of a simulated institution's.

    python -m bench.instant_institution --port 8099
"""

from __future__ import annotations

import argparse
import json

import uvloop
from aiohttp import web

ANSWER = json.dumps({"status": "stopped", "amount_held": "1000.00", "onward": []}).encode()


async def stop(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instant_institution", description=__doc__
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/stops", stop)
    app.router.add_get("/healthz", healthz)
    # On uvloop, as Stopper's own servers run (uvicorn picks it when installed).
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()

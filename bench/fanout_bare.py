"""The ceiling: a bare websockets server that broadcasts each Redis pub/sub message to every socket.

No Django, no channel layer: one SUBSCRIBE, one websockets.broadcast() per event. The trigger
PUBLISHes from another process, so the event crosses a process boundary as it does in Livelog.
"""

import argparse
import asyncio
import resource

import redis.asyncio as aioredis
from websockets.asyncio.server import broadcast, serve

READERS: set = set()


async def reader(websocket):
    READERS.add(websocket)
    try:
        await websocket.wait_closed()
    finally:
        READERS.discard(websocket)


async def relay(redis_url: str, channel: str):
    client = aioredis.Redis.from_url(redis_url, socket_timeout=None)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    async for message in pubsub.listen():
        if message["type"] == "message":
            broadcast(READERS, message["data"].decode())


async def main(args):
    async with serve(reader, args.host, args.port, compression=None, backlog=2048):
        await relay(args.redis, args.channel)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", required=True)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parser.parse_args()))

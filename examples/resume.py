#!/usr/bin/env python3
"""Resume after a disconnect: subscribe to BTC trades, read for a while,
disconnect, come back with "since" (the seq of the last frame received) and
get exactly the trades that were missed, then live ones. Every frame's
"prev" must be the "seq" before it: the script checks the chain and says
whether anything was missed or duplicated.

    python3 resume.py [--ws ws://localhost:8080/ws] [--away 3] [--read 2]

Against `make run` (the demo feed publishes 4 BTC trades a second) it
prints something like:

    live: 8 trades, seq 25..109
    away for 3.0 s
    resumed: recovered=true, 12 replayed trades (seq 113..221), then 8 live
    chain: 28 trades, no gap, no duplicate

Debian: apt install python3-websockets (the websockets 10 API and later).
"""
import argparse
import asyncio
import json
import sys
import time

import websockets


async def read_trades(ws, seconds, frames):
    """Append the trade frames that arrive within `seconds` to frames."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), left))
        except asyncio.TimeoutError:
            break
        if msg.get("channel") == "trades":
            frames.append(msg)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", default="ws://localhost:8080/ws")
    ap.add_argument("--symbol", default="BTC")
    ap.add_argument("--away", type=float, default=3.0, help="seconds disconnected")
    ap.add_argument("--read", type=float, default=2.0, help="seconds of live trades before and after")
    args = ap.parse_args()
    sub = {"source": "trades", "symbol": args.symbol}

    # 1. Live: the ack names the channel's latest seq, every frame its seq
    #    and the seq of the trade before it (prev).
    live = []
    async with websockets.connect(args.ws) as ws:
        await ws.send(json.dumps({"method": "subscribe", "params": sub}))
        ack = json.loads(await ws.recv())
        if "seq" not in ack:
            sys.exit(f"no history on this node (start it with --history on): {ack}")
        await read_trades(ws, args.read, live)
    if not live:
        sys.exit("no trades received: is a feed publishing (make run has one)?")
    print(f"live: {len(live)} trades, seq {live[0]['seq']}..{live[-1]['seq']}")

    # 2. Away: trades go on without us.
    print(f"away for {args.away:.1f} s")
    await asyncio.sleep(args.away)

    # 3. Back with since: the missed trades first, then live.
    last = live[-1]["seq"]
    resumed = []
    async with websockets.connect(args.ws) as ws:
        await ws.send(json.dumps({"method": "subscribe", "params": {**sub, "since": last}}))
        ack = json.loads(await ws.recv())
        if ack.get("channel") != "subscribe":
            sys.exit(f"resume refused: {ack}")
        await read_trades(ws, args.read, resumed)
    # The ack's seq was the channel's latest when we came back: the trades
    # up to it are the replay, the rest arrived live.
    replayed = [f for f in resumed if f["seq"] <= ack["seq"]]
    print(f"resumed: recovered={json.dumps(ack['recovered'])}, {len(replayed)} replayed trades"
          + (f" (seq {replayed[0]['seq']}..{replayed[-1]['seq']})" if replayed else "")
          + f", then {len(resumed) - len(replayed)} live")

    # 4. The chain: each prev is the seq before it, across the disconnect.
    frames, ok = live + resumed, True
    for a, b in zip(frames, frames[1:]):
        if b["seq"] <= a["seq"]:
            print(f"duplicate or out of order: seq {b['seq']} after {a['seq']}")
            ok = False
        elif b["prev"] != a["seq"]:
            print(f"gap: seq {b['seq']} has prev {b['prev']}, the last one received was {a['seq']}")
            ok = False
    print(f"chain: {len(frames)} trades, " + ("no gap, no duplicate" if ok else "BROKEN"))
    sys.exit(0 if ok and ack["recovered"] else 1)


asyncio.run(main())

#!/usr/bin/env python3
"""A Floodgate client as trading bots write it: wallet-signed key management
(Pacifica-compatible signatures, PyNaCl) and a websocket stream with the key
in the PF-API-KEY header (the `websockets` package).

    python3 floodgate_client.py create   --wallet wallet.key     # prints a new API key
    python3 floodgate_client.py list     --wallet wallet.key
    python3 floodgate_client.py revoke   --wallet wallet.key KEY_OR_PREFIX
    python3 floodgate_client.py status   KEY
    python3 floodgate_client.py stream   KEY [--count N] [--source trades --symbol BTC]

The wallet file holds a 32-byte ed25519 seed in hex; it is created on first
use. Debian: apt install python3-nacl python3-websockets.
"""
import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request

from nacl.signing import SigningKey

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out


def load_wallet(path: str) -> SigningKey:
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(os.urandom(32).hex())
        os.chmod(path, 0o600)
    with open(path) as f:
        return SigningKey(bytes.fromhex(f.read().strip()))


def signed_body(sk: SigningKey, typ: str, payload: dict, expiry_window: int = 5000) -> dict:
    """Sign exactly as the Pacifica SDK does: sorted keys, compact, ASCII."""
    ts = int(time.time() * 1000)
    message = {"data": payload, "expiry_window": expiry_window, "timestamp": ts, "type": typ}
    raw = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    signature = sk.sign(raw.encode("utf-8")).signature
    return {"account": b58encode(bytes(sk.verify_key)), "agent_wallet": None,
            "signature": b58encode(signature), "timestamp": ts,
            "expiry_window": expiry_window, **payload}


def call(api: str, method: str, path: str, body=None, headers=None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def connect(url: str, key: str):
    """websockets.connect with the key header; the keyword changed in 14."""
    import websockets
    headers = {"PF-API-KEY": key}
    if int(websockets.__version__.split(".")[0]) >= 14:
        return websockets.connect(url, additional_headers=headers)
    return websockets.connect(url, extra_headers=headers)


async def stream(url: str, key: str, sub: dict, count: int) -> None:
    async with connect(url, key) as ws:
        await ws.send(json.dumps({"method": "subscribe", "params": sub}))
        n = 0
        while count < 0 or n < count:
            print(await ws.recv(), flush=True)
            n += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["create", "list", "revoke", "status", "stream"])
    p.add_argument("key", nargs="?")
    p.add_argument("--api", default=os.environ.get("FLOODGATE_API", "http://localhost:8081"))
    p.add_argument("--ws", default=os.environ.get("FLOODGATE_WS", "ws://localhost:8080/ws"))
    p.add_argument("--wallet", default="wallet.key")
    p.add_argument("--source", default="trades")
    p.add_argument("--symbol", default="BTC")
    p.add_argument("--count", type=int, default=5, help="messages to print; -1 for ever")
    a = p.parse_args()
    if a.command in ("create", "list", "revoke"):
        sk = load_wallet(a.wallet)
        if a.command == "create":
            r = call(a.api, "POST", "/api/v1/account/api_keys/create", signed_body(sk, "create_api_key", {}))
        elif a.command == "list":
            r = call(a.api, "POST", "/api/v1/account/api_keys", signed_body(sk, "list_api_keys", {}))
        else:
            r = call(a.api, "POST", "/api/v1/account/api_keys/revoke", signed_body(sk, "revoke_api_key", {"api_key": a.key}))
        print(json.dumps(r))
        return 0 if r.get("success") else 1
    if a.command == "status":
        r = call(a.api, "GET", "/api/v1/api_keys/status", headers={"PF-API-KEY": a.key})
        print(json.dumps(r))
        return 0 if r.get("success") else 1
    sub = {"source": a.source}
    if a.source != "prices":
        sub["symbol"] = a.symbol
    try:
        asyncio.run(stream(a.ws, a.key, sub, a.count))
    except Exception as e:  # the close code tells why the server ended the stream
        print(f"closed: {e}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

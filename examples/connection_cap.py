import asyncio, websockets
async def main():
    conns = [await websockets.connect("ws://localhost:8080/ws") for _ in range(300)]
    r, w = await asyncio.open_connection("localhost", 8080)   # the 301st, by hand
    w.write(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    print((await r.read(1024)).decode())
asyncio.run(main())

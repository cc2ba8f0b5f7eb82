"""A WebSocket client that stops reading: a raw socket with a tiny receive buffer.

aiohttp's own client keeps reading into its buffer in the background; this one speaks
just enough of RFC 6455 (handshake, masked text frames) to send requests and then never
reads again, so the server's writes to it pile up until they block.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


class StuckClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(1)
            assert chunk, "the server closed during the handshake"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 101"), answer

    def send(self, message: str, *data: Any) -> None:
        payload = json.dumps({"message": message, "data": list(data)}).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            len(payload), "big")
        self.sock.sendall(header + mask + masked)

    def flood(self, requests: int, seconds: float = 0.5) -> int:
        """Send up to ``requests`` publishStream requests the server answers with a large
        FAILED status (each echoes a 15 KB ``custom``), without reading the answers; stop
        when the server stops reading too (a send blocked for ``seconds``). Returns how
        many were sent."""
        custom = {"pad": "x" * 15000}
        self.sock.settimeout(seconds)
        try:
            for sent in range(requests):
                self.send("publishStream", {"mediaSessionId": f"flood-{sent}", "name": "f",
                                            "custom": custom})
        except TimeoutError:
            return sent
        finally:
            self.sock.settimeout(None)
        return requests

    def close(self) -> None:
        self.sock.close()

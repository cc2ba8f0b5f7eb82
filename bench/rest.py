"""REST API speed: find_all over 1,000 registered streams, and terminating 1,000 streams.

    python bench/rest.py [--streams 1000] [--seconds 5] [--connections 16]

The hookcast server runs in this process on 127.0.0.1 with N streams put straight
into its registry (no media is needed to measure the registry and the HTTP layer).
A separate load-generator process (aiohttp, reading raw bytes, never parsing them)
keeps C connections busy for T seconds. Side by side in the same run it measures:

  hookcast   POST /rest-api/stream/find_all       (validation, middleware, cached JSON)
  bare       GET  /bench/bare  (a plain aiohttp handler json.dumps-ing the same
             1,000 WCS stream objects on every request: what the cache saves)
  tiny       GET  /rest-api/health  (the floor: aiohttp itself on this machine)

then times one POST /rest-api/stream/terminate {"published": true} matching all N.
Goals (issue 5): >= 2,000 find_all requests/s; a 1,000-stream terminate in <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hookcast.config.home import Home
from hookcast.config.settings import parse_properties
from hookcast.engine.streams import Status, Stream
from hookcast.keys import ENGINE
from hookcast.server import Server

LOADGEN = textwrap.dedent("""
    import asyncio, json, sys, time
    import aiohttp

    async def main(url, method, seconds, connections):
        latencies = []
        deadline = time.monotonic() + seconds
        async def worker(http):
            while time.monotonic() < deadline:
                started = time.monotonic()
                async with http.request(method, url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.monotonic() - started)
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as http:
            started = time.monotonic()
            await asyncio.gather(*(worker(http) for _ in range(connections)))
            elapsed = time.monotonic() - started
        print(json.dumps({"requests": len(latencies), "elapsed": elapsed,
                          "latencies": sorted(latencies)}))

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
""")

BARE_PLUGIN = textwrap.dedent("""
    import json
    from pathlib import Path
    from aiohttp import web
    from hookcast import hookimpl

    STREAMS = json.loads((Path(__file__).parent / "streams.json").read_text())

    async def bare(request):
        return web.json_response(STREAMS)

    @hookimpl
    def register_rest_routes():
        return [web.get("/bench/bare", bare)]
""")


def make_streams(count: int) -> list[Stream]:
    return [
        Stream(media_session_id=f"{i:08d}-0000-4000-8000-000000000000", name=f"stream-{i}",
               published=True, session_id=f"session-{i}", app_key="defaultApp",
               status=Status.PUBLISHING, video_codec="VP8", audio_codec="opus",
               width=640, height=480, custom={"room": i % 10})
        for i in range(count)
    ]


async def load(url: str, method: str, seconds: float, connections: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOADGEN, url, method, str(seconds), str(connections),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    result = json.loads(out)
    latencies = result["latencies"]
    return {
        "rate": result["requests"] / result["elapsed"],
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def run(count: int, seconds: float, connections: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        home = Home(Path(folder))
        home.plugins.mkdir(parents=True)
        streams = make_streams(count)
        (home.plugins / "streams.json").write_text(json.dumps([s.to_wcs() for s in streams]))
        (home.plugins / "bench_bare.py").write_text(BARE_PLUGIN)
        settings, _ = parse_properties(
            {"bind_address": "127.0.0.1", "ip": "127.0.0.1", "ws.port": "0", "http.port": "0",
             "plugin_reload": "false"}, "bench")
        server = Server(home, settings)
        await server.start()
        engine = server.http_app[ENGINE]
        for stream in streams:
            engine.registry.add(stream)
        base = f"http://127.0.0.1:{server.http_port}"
        size = len(engine.registry.wcs_json())
        print(f"{count} streams registered; find_all answer {size / 1024:.0f} KiB; "
              f"{connections} connections, {seconds:g} s each\n")
        targets = [
            ("hookcast find_all", "/rest-api/stream/find_all", "POST"),
            ("bare aiohttp + json.dumps", "/bench/bare", "GET"),
            ("aiohttp floor (health)", "/rest-api/health", "GET"),
        ]
        rows = [
            (label, await load(base + path, verb, seconds, connections))
            for label, path, verb in targets
        ]
        print(f"{'endpoint':28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for label, row in rows:
            print(f"{label:28} {row['rate']:9.0f} {row['p50']:8.2f} {row['p99']:8.2f}")
        hookcast, bare = rows[0][1]["rate"], rows[1][1]["rate"]
        print(f"\nfind_all vs bare aiohttp serialising the same streams: {hookcast / bare:.1f}x")

        import aiohttp

        async with aiohttp.ClientSession() as http:
            started = time.perf_counter()
            url = f"{base}/rest-api/stream/terminate"
            async with http.post(url, json={"published": True}) as response:
                body = await response.json()
            terminate = time.perf_counter() - started
        assert len(body["terminated"]) == count and len(engine.registry) == 0
        print(f"terminate of {count} matching streams: {terminate * 1000:.0f} ms")
        print(f"\ngoals: find_all >= 2000 req/s: {'met' if hookcast >= 2000 else 'NOT met'} "
              f"({hookcast:.0f}); terminate <= 1 s: {'met' if terminate <= 1 else 'NOT met'} "
              f"({terminate:.3f} s)")
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args.streams, args.seconds, args.connections))


if __name__ == "__main__":
    main()

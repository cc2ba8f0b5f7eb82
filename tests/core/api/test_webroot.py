"""The web root (``web_root_dir`` at ``web_root_path``) and the console's static files on a
real server, asked with raw HTTP requests as a browser or an attacker sends them: pages
with their content type, nothing outside the folder or hidden, CORS on public files and
never on the REST API or the console's actions."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hookcast.config.home import Home
from hookcast.config.settings import ConfigError
from hookcast.server import Server, StartupError
from tests.conftest import make_settings

SECRET = b"SECRET-do-not-serve"
EVIL = "https://evil.example"


async def fetch(server: Server, raw_path: str, method: str = "GET",
                headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with ``raw_path`` sent exactly as written (no client
    normalises its ``..`` or decodes its escapes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    lines = [f"{method} {raw_path} HTTP/1.1", f"Host: 127.0.0.1:{server.http_port}",
             "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        found[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), found, content


def write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)


@pytest.fixture
def pages(home: Home) -> Path:
    """www/ with pages, a sub-folder, hidden files and symlinks, and a secret beside it."""
    www = home.root / "www"
    write(www / "index.html", "<!doctype html><title>home page</title>")
    write(www / "app.js", "export const answer = 42;\n")
    write(www / "style.css", "body { color: red }\n")
    write(www / "data.json", '{"a": 1}')
    write(www / "pic.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>")
    write(www / "clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(1000))
    write(www / "sub" / "index.html", "<title>sub index</title>")
    write(www / "sub" / "page.html", "<title>sub page</title>")
    (www / "empty").mkdir()
    write(home.conf / "secret.txt", SECRET)
    write(www / ".env", SECRET)
    write(www / ".git" / "config", SECRET)
    write(www / "sub" / ".hidden.html", SECRET)
    (www / "out.html").symlink_to(home.conf / "secret.txt")
    (www / "confdir").symlink_to(home.conf)
    (www / "relative-out.html").symlink_to(Path("..") / "conf" / "secret.txt")
    (www / "alias.html").symlink_to(".env")  # inside, but hidden
    (www / "loop").symlink_to("loop")
    os.link(home.conf / "secret.txt", www / "hardlink.txt")  # a hard link is a file of www/
    return www


@pytest.mark.parametrize(("path", "content_type", "text"), [
    ("/www/", "text/html", b"home page"),
    ("/www/index.html", "text/html", b"home page"),
    ("/www/app.js", "text/javascript", b"answer = 42"),
    ("/www/style.css", "text/css", b"color: red"),
    ("/www/data.json", "application/json", b'{"a": 1}'),
    ("/www/pic.svg", "image/svg+xml", b"<svg"),
    ("/www/clip.mp4", "video/mp4", b"ftypmp42"),
    ("/www/sub/", "text/html", b"sub index"),
    ("/www/sub/page.html", "text/html", b"sub page"),
    ("/www/sub/page.html?v=3", "text/html", b"sub page"),
    ("/www/hardlink.txt", "text/plain", SECRET),
])
async def test_pages_in_www_are_served_with_their_content_type(
        home: Home, pages: Path, start_server: Callable[..., Any], path: str,
        content_type: str, text: bytes) -> None:
    server = await start_server(home)
    status, headers, body = await fetch(server, path)
    assert status == 200, (path, body)
    assert headers["content-type"].split(";")[0] == content_type
    assert text in body
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["access-control-allow-origin"] == "*"


async def test_folders_redirect_to_their_slash_and_files_take_ranges(
        home: Home, pages: Path, start_server: Callable[..., Any]) -> None:
    server = await start_server(home)
    for path, location in (("/www", "/www/"), ("/www/sub", "/www/sub/"),
                           ("/www/sub?x=1", "/www/sub/?x=1")):
        status, headers, _ = await fetch(server, path)
        assert (status, headers["location"]) == (301, location), path
    status, headers, body = await fetch(server, "/www/clip.mp4", headers={"Range": "bytes=4-11"})
    assert (status, body) == (206, b"ftypmp42")
    assert headers["content-range"] == "bytes 4-11/1012"
    status, headers, body = await fetch(server, "/www/app.js", method="HEAD")
    assert status == 200 and body == b"" and headers["content-type"] == "text/javascript"
    status, _, _ = await fetch(server, "/www/app.js", method="POST", body=b"x")
    assert status == 405


@pytest.mark.parametrize("path", [
    "/www/../conf/secret.txt",
    "/www/%2e%2e/conf/secret.txt",
    "/www/%2E%2E/conf/secret.txt",
    "/www/..%2fconf%2fsecret.txt",
    "/www/sub%2F..%2F..%2Fconf/secret.txt",
    "/www/..%5cconf%5csecret.txt",
    "/www/sub\\..\\..\\conf\\secret.txt",
    "/www//" + "{conf}/secret.txt",
    "/www/.env",
    "/www/%2eenv",
    "/www/.git/config",
    "/www/sub/.hidden.html",
    "/www/./.env",
    "/www/out.html",
    "/www/relative-out.html",
    "/www/confdir/secret.txt",
    "/www/alias.html",
    "/www/loop",
    "/www/loop/x",
    "/www/empty/",
    "/www/index.html%00.png",
    "/www/missing.html",
])
async def test_nothing_outside_www_or_hidden_is_served(
        home: Home, pages: Path, start_server: Callable[..., Any], path: str) -> None:
    server = await start_server(home)
    path = path.replace("{conf}", str(home.conf).lstrip("/"))
    status, _, body = await fetch(server, path)
    assert status == 404, (path, status, body)
    assert SECRET not in body


async def test_public_files_get_cors_and_the_api_and_console_actions_never(
        home: Home, pages: Path, start_server: Callable[..., Any]) -> None:
    """Another site's page may load wcs.js or a page of www/ (CORS ``*``); it may not
    read or act on the REST API or the console (403, no CORS header)."""
    server = await start_server(home)
    cross = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}
    for path, content_type in (("/console/static/wcs.js", "text/javascript"),
                               ("/console/static/console.css", "text/css"),
                               ("/www/app.js", "text/javascript")):
        status, headers, body = await fetch(server, path, headers=cross)
        assert status == 200 and headers["content-type"] == content_type, path
        assert headers["access-control-allow-origin"] == "*", path
    status, _, body = await fetch(server, "/console/static/wcs.js")
    assert b"export class WcsSession" in body
    json_csrf = {**cross, "Content-Type": "application/json", "Cookie": "hookcast_csrf=abc",
                 "X-CSRF-Token": "abc"}
    refused = (("GET", "/rest-api/stream/find_all", cross, b""),
               ("POST", "/rest-api/stream/terminate", json_csrf, b"{}"),
               ("OPTIONS", "/rest-api/stream/terminate", cross, b""),
               ("POST", "/console/api/stream/terminate", json_csrf, b"{}"),
               ("GET", "/console/events", cross, b""),
               ("GET", "/", cross, b""),
               ("GET", "/records", cross, b""))
    for method, path, headers, body in refused:
        status, answer, _ = await fetch(server, path, method=method, headers=headers, body=body)
        assert status == 403, (method, path)
        assert "access-control-allow-origin" not in answer, (method, path)
    for path in ("/console/static/../../console.py", "/console/static/%2e%2e/console.py",
                 "/console/static/..%2fconsole.py"):
        status, _, body = await fetch(server, path)
        assert status == 404 and b"hookcast_plugin" not in body, path


async def test_web_root_dir_and_path_are_properties(
        home: Home, tmp_path: Path, start_server: Callable[..., Any]) -> None:
    pages = tmp_path / "elsewhere"
    write(pages / "demo" / "page.html", "<title>elsewhere</title>")
    server = await start_server(home, web_root_dir=str(pages), web_root_path="/client2/")
    status, _, body = await fetch(server, "/client2/demo/page.html")
    assert status == 200 and b"elsewhere" in body
    assert (await fetch(server, "/www/demo/page.html"))[0] == 404
    off = await start_server(home, web_root_dir="")
    write(home.root / "www" / "index.html", "<title>home page</title>")
    assert (await fetch(off, "/www/"))[0] == 404
    missing = await start_server(home, web_root_dir="nowhere")
    assert (await fetch(missing, "/www/"))[0] == 404


@pytest.mark.parametrize(("path", "taken"), [
    ("/client/", "/client/records/{name}"),
    ("/client/records/", "/client/records/{name}"),
    ("/console/", "/console/"),
    ("/console/static/x/", "/console/static/"),
    ("/rest-api/", "/rest-api/"),
    ("/apps/", "/apps/"),
])
async def test_a_web_root_path_served_by_another_route_stops_the_start(
        home: Home, path: str, taken: str) -> None:
    with pytest.raises(StartupError) as refused:
        Server(home, make_settings(web_root_path=path))
    message = str(refused.value)
    assert message.startswith(f"web_root_path={path}: {taken}"), message
    assert message.endswith("is already served there; choose another path")


@pytest.mark.parametrize("path", ["/", "www", "/a/../b/", "/.hidden/", "/a b/", "/a?b/"])
def test_a_web_root_path_that_is_not_a_url_path_is_refused(path: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_settings(web_root_path=path)
    assert f"test: web_root_path={path}: expected a URL path such as /www/" \
        in refused.value.problems[0]
    assert make_settings(web_root_path="/examples").web_root_path == "/examples/"

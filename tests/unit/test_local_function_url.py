"""The local stand-ins the push callback's tests and benchmark run on: the Function URL
(local_aws.function_url) and the host-runnable copy of a build (local_aws.host_build)."""

from __future__ import annotations

import base64
import platform
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_aws.function_url import FunctionUrlServer, to_function_url_event
from local_aws.host_build import HostBuildError, foreign_distributions, host_runnable_build
from local_aws.lambda_invoke import LambdaContext


def test_requests_become_function_url_events() -> None:
    event = to_function_url_event(
        "post",
        "/wechat?nonce=1&a=x&a=y&empty=",
        {"Content-Type": "text/xml", "X-Two": "1", "x-two": "2", "Cookie": "a=1; b=2"},
        b"<xml/>",
        source_ip="203.0.113.9",
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert (event["rawPath"], event["rawQueryString"]) == ("/wechat", "nonce=1&a=x&a=y&empty=")
    assert event["queryStringParameters"] == {"nonce": "1", "a": "x,y", "empty": ""}
    assert event["headers"]["x-two"] == "1,2"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "203.0.113.9"
    assert (event["body"], event["isBase64Encoded"]) == ("<xml/>", False)
    binary = to_function_url_event("POST", "/", {"Content-Type": "image/png"}, b"\x89PNG")
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x89PNG"
    assert "queryStringParameters" not in binary
    empty = to_function_url_event("GET", "/", {}, b"")
    assert "body" not in empty


def test_results_and_failures_are_answered_as_a_function_url_does() -> None:
    def handler(event: dict[str, Any], context: LambdaContext) -> Any:
        path = event["rawPath"]
        if path == "/text":
            return {"statusCode": 201, "headers": {"Content-Type": "text/plain"}, "body": "ok"}
        if path == "/binary":
            return {
                "statusCode": 200,
                "body": base64.b64encode(b"\x00").decode(),
                "isBase64Encoded": True,
            }
        if path == "/raise":
            raise RuntimeError("boom")
        return {"plain": "object"}

    with FunctionUrlServer(handler) as server:
        text = httpx.get(server.url + "text")
        assert (text.status_code, text.text, text.headers["content-type"]) == (
            201,
            "ok",
            "text/plain",
        )
        assert httpx.get(server.url + "binary").content == b"\x00"
        assert httpx.get(server.url + "other").json() == {"plain": "object"}
        assert httpx.get(server.url + "raise").status_code == 502
        assert [r.status for r in server.requests] == [201, 200, 200, 502]
        port = server.port
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_requests_beyond_the_concurrency_are_throttled() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        entered.set()
        release.wait(10)
        return {"statusCode": 200, "body": "success"}

    with FunctionUrlServer(slow, max_concurrency=1) as server:
        first: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: first.append(httpx.post(server.url, timeout=10)))
        worker.start()
        assert entered.wait(5)
        assert httpx.post(server.url, timeout=10).status_code == 429
        release.set()
        worker.join(10)
        assert first[0].status_code == 200


def _fake_build(root: Path, machine: int) -> Path:
    """A built function vendoring defusedxml with a shared object for ``machine``."""
    function = root / "build" / "Fn"
    (function / "defusedxml").mkdir(parents=True)
    (function / "defusedxml" / "__init__.py").write_text("BUILT = True\n")
    native = function / "defusedxml" / "_native.so"
    native.write_bytes(b"\x7fELF" + b"\x00" * 14 + machine.to_bytes(2, "little") + b"\x00" * 8)
    dist = function / f"defusedxml-{metadata.version('defusedxml')}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: defusedxml\nVersion: {metadata.version('defusedxml')}\n"
    )
    (dist / "RECORD").write_text(
        "defusedxml/__init__.py,,\ndefusedxml/_native.so,,\n" + f"{dist.name}/RECORD,,\n"
    )
    (root / "build" / "template.yaml").write_text("Resources: {}\n")
    (function / "app.py").write_text("")
    return root / "build"


def test_foreign_native_extensions_are_swapped_for_the_hosts_same_version(
    tmp_path: Path,
) -> None:
    host_is_arm = platform.machine().lower() in ("aarch64", "arm64")
    foreign, native = (0x3E, 0xB7) if host_is_arm else (0xB7, 0x3E)
    build = _fake_build(tmp_path / "foreign", foreign)
    assert set(foreign_distributions(build / "Fn")) == {"defusedxml"}
    copy = host_runnable_build(build, tmp_path / "runnable", ["Fn"])
    assert (copy / "template.yaml").is_file()
    assert (copy / "Fn" / "app.py").is_file()
    assert not (copy / "Fn" / "defusedxml" / "_native.so").exists()
    assert "BUILT" not in (copy / "Fn" / "defusedxml" / "__init__.py").read_text()
    assert (copy / "Fn" / "defusedxml" / "ElementTree.py").is_file()
    assert foreign_distributions(copy / "Fn") == {}
    # A build for this machine is copied as it is.
    same = _fake_build(tmp_path / "same", native)
    assert foreign_distributions(same / "Fn") == {}
    kept = host_runnable_build(same, tmp_path / "kept", ["Fn"])
    assert "BUILT" in (kept / "Fn" / "defusedxml" / "__init__.py").read_text()


def test_another_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    build = _fake_build(
        tmp_path, 0x3E if platform.machine().lower() in ("aarch64", "arm64") else 0xB7
    )
    meta = next((build / "Fn").glob("*.dist-info")) / "METADATA"
    meta.write_text("Metadata-Version: 2.1\nName: defusedxml\nVersion: 0.0.1\n")
    with pytest.raises(HostBuildError, match=r"pip install defusedxml==0\.0\.1"):
        host_runnable_build(build, tmp_path / "out", ["Fn"])
    with pytest.raises(HostBuildError, match="make build"):
        host_runnable_build(tmp_path / "nowhere", tmp_path / "out2", ["Fn"])

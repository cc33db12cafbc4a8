"""The gateway as a process, a small HTTP client over urllib, and the document shape check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.processes import LoggedProcess

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".build" / "gateway" / "corrigo-gateway"
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("CORRIGO_REQUIRE_GATEWAY") == "1"
# What `make gateway` needs: commands, and Go sources in GOPATH mode, with the Debian
# packages that hold them.
TOOLS = {
    "go": "golang-go",
    "protoc": "protobuf-compiler",
    "protoc-gen-go": "golang-goprotobuf-dev",
    "protoc-gen-grpc-gateway": "golang-grpc-gateway",
}
GOCODE = Path("/usr/share/gocode/src")
SOURCES = {
    "github.com/grpc-ecosystem/grpc-gateway/runtime": (
        "golang-github-grpc-ecosystem-grpc-gateway-dev"
    ),
    "google.golang.org/grpc": "golang-google-grpc-dev",
    "google.golang.org/genproto/googleapis/rpc": "golang-google-genproto-dev",
    "github.com/golang/protobuf/proto": "golang-goprotobuf-dev",
}


def unavailable(problem: str) -> None:
    """Skip with the reason; fail instead where the gateway is mandatory (CI)."""
    if REQUIRED:
        pytest.fail(f"REST gateway required (CI=true or CORRIGO_REQUIRE_GATEWAY=1): {problem}")
    pytest.skip(problem)


def build() -> Path:
    """`make gateway` (a no-op when the binary is fresh); skips when Go or the Go
    packages it builds from are missing."""
    missing = {package for tool, package in TOOLS.items() if shutil.which(tool) is None}
    missing |= {package for path, package in SOURCES.items() if not (GOCODE / path).is_dir()}
    if missing:
        unavailable(
            f"`make gateway` cannot build the REST gateway without Debian's "
            f"{', '.join(sorted(missing))} (README, REST)"
        )
    done = subprocess.run(
        ["make", "gateway"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"make gateway failed:\n{done.stdout}\n{done.stderr}"
    return BINARY


class GatewayProcess(LoggedProcess):
    """`corrigo-gateway` in front of a server, on the free port its log line names."""

    def __init__(self, endpoint: str, log: Path, extra: Sequence[str] = ()) -> None:
        command = [str(BINARY), "--listen", "127.0.0.1:0", "--endpoint", endpoint, *extra]
        super().__init__(command, log)
        self.url = self._wait_listening()

    def _wait_listening(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"serving REST on (http://\S+)", self.log())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"gateway not listening after {timeout}s:\n{self.log()}")


@dataclass
class Answer:
    """An HTTP answer: status, headers and the body's text."""

    status: int
    headers: Message
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def lines(self) -> list[Any]:
        """An NDJSON body, one value per line."""
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def reason(self) -> str:
        """The ErrorInfo reason of an error answer."""
        for detail in self.json.get("details", []):
            if detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo":
                return str(detail["reason"])
        raise AssertionError(f"no ErrorInfo in {self.text}")

    def violations(self) -> list[str]:
        """The fields a BadRequest detail of an error answer names."""
        return [
            violation["field"]
            for detail in self.json.get("details", [])
            if detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
            for violation in detail["field_violations"]
        ]


@dataclass
class Rest:
    """Calls the gateway as a document's user would, with a bearer token (or none)."""

    url: str
    token: str | None = None

    def as_user(self, token: str | None) -> Rest:
        return Rest(self.url, token)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """`body` is sent as JSON (the documents' `Content-Type: application/json`);
        `data` as it is."""
        if body is not None:
            data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Answer(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as err:
            with err:
                return Answer(err.code, err.headers, err.read().decode())

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """The JSON answer of a call that must succeed with `status`."""
        answer = self.call(method, path, body)
        assert answer.status == status, f"{method} {path}: {answer.status} {answer.text}"
        assert answer.headers.get_content_type() == "application/json", answer.headers
        return answer.json


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_shape(
    actual: Any,
    example: Any,
    *,
    nullable: Sequence[str] = (),
    may_be_empty: Sequence[str] = (),
    where: str = "",
) -> None:
    """`actual` has every field of a document's example answer, nested alike, with the
    same JSON types: an integer where the example has one (not a string or a float), a
    number for a float, ISO-8601 times and UUIDs where the example shows them, a
    non-empty list where the example's is (unless its path is in `may_be_empty`). `null`
    only where the path is in `nullable`. Paths are dotted, `[]` for a list's items."""
    name = where or "the answer"
    if actual is None and where in nullable:
        return
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{name}: {actual!r} is not an object"
        for key, value in example.items():
            path = f"{where}.{key}" if where else key
            assert key in actual, f"{path}: missing (fields: {sorted(actual)})"
            assert_shape(
                actual[key], value, nullable=nullable, may_be_empty=may_be_empty, where=path
            )
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{name}: {actual!r} is not an array"
        if example and where not in may_be_empty:
            assert actual, f"{name}: empty, the document shows items"
        for item in actual if example else []:
            assert_shape(
                item, example[0], nullable=nullable, may_be_empty=may_be_empty, where=f"{where}[]"
            )
    elif isinstance(example, bool):
        assert isinstance(actual, bool), f"{name}: {actual!r} is not a boolean"
    elif isinstance(example, int):
        assert isinstance(actual, int) and not isinstance(actual, bool), (
            f"{name}: {actual!r} is not an integer"
        )
    elif isinstance(example, float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), (
            f"{name}: {actual!r} is not a number"
        )
    elif isinstance(example, str):
        assert isinstance(actual, str), f"{name}: {actual!r} is not a string"
        if _DATE.match(example):
            try:
                datetime.fromisoformat(actual)
            except ValueError:
                raise AssertionError(f"{name}: {actual!r} is not an ISO-8601 time") from None
        if _UUID.match(example):
            assert _UUID.match(actual), f"{name}: {actual!r} is not a UUID"

"""What the gateway adds beyond the documents' routes: NDJSON streams, error bodies with
their details, the Authorization header, TLS to the server, and a clean stop."""

from __future__ import annotations

import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest

from tests.processes import ServerProcess, bootstrap
from tests.rest import world
from tests.rest.conftest import Stack
from tests.rest.gateway import GatewayProcess, Rest, unique


@pytest.fixture(scope="module")
def filled(admin: Rest) -> world.Filled:
    return world.filled_dataset(admin, more=4)


def test_a_stream_is_ndjson_of_results(admin: Rest, filled: world.Filled) -> None:
    answer = admin.call("POST", f"{filled.path}/export/stream", {"limit": 2})
    assert answer.status == 200, answer.text
    assert answer.headers.get_content_type() == "application/x-ndjson"
    lines = answer.lines
    assert [set(line) for line in lines] == [{"result"}] * 3
    pages = [line["result"] for line in lines]
    assert [len(page["comments"]) for page in pages] == [2, 2, 1]
    assert all(page["continuation"] for page in pages[:-1]) and pages[-1]["continuation"] == ""
    # A page's continuation resumes the unary export where the stream was.
    rest = admin.ok("POST", f"{filled.path}/export", {"continuation": pages[0]["continuation"]})
    assert rest["comments"] == pages[1]["comments"] + pages[2]["comments"]


def test_a_stream_that_fails_first_answers_its_status(admin: Rest, filled: world.Filled) -> None:
    answer = admin.call("POST", f"/api/v1/datasets/{filled.owner}/missing/export/stream", {})
    assert answer.status == 404
    [line] = answer.lines
    error = line["error"]
    assert (error["grpc_code"], error["http_code"], error["http_status"]) == (5, 404, "Not Found")
    assert error["details"][0]["reason"] == "RESOURCE_NOT_FOUND"


def test_an_error_body_carries_code_message_and_details(admin: Rest, filled: world.Filled) -> None:
    answer = admin.call("PUT", f"{filled.path}-x", {"dataset": {"source_ids": ["nope"]}})
    assert answer.status == 400
    body = answer.json
    assert set(body) == {"error", "message", "code", "details"}
    assert body["code"] == 3 and body["error"] == body["message"]
    assert "dataset.source_ids[0]" in body["message"]
    assert [d["@type"].rsplit(".", 1)[1] for d in body["details"]] == ["ErrorInfo", "BadRequest"]
    assert answer.reason() == "INVALID_REQUEST"
    assert answer.violations() == ["dataset.source_ids[0]"]


def test_the_authorization_header_reaches_the_server(admin: Rest) -> None:
    me = admin.ok("GET", "/api/v1/whoami")
    assert me["organization"]["name"].startswith("gateway-")
    missing = admin.as_user(None).call("GET", "/api/v1/whoami")
    assert missing.status == 401 and missing.reason() == "TOKEN_MISSING"
    malformed = admin.call("GET", "/api/v1/whoami", headers={"Authorization": "Basic abc"})
    assert malformed.status == 401 and malformed.reason() == "TOKEN_MALFORMED"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_to_the_server(stack: Stack, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    name = unique("tls")
    token = bootstrap(stack.db_url, name, f"admin@{name}.test")
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    server = ServerProcess(stack.db_url, tmp_path / "server.log", extra=tls)
    try:
        server.wait_serving(credentials=grpc.ssl_channel_credentials(cert.read_bytes()))
        verified = GatewayProcess(
            server.target, tmp_path / "verified.log", extra=["--endpoint-ca", str(cert)]
        )
        plaintext = GatewayProcess(server.target, tmp_path / "plaintext.log")
        try:
            me = Rest(verified.url, token).ok("GET", "/api/v1/whoami")
            assert me["organization"]["name"] == name
            # Without TLS the gateway cannot reach a TLS server: 503, never an answer.
            assert Rest(plaintext.url, token).call("GET", "/api/v1/whoami").status == 503
        finally:
            assert verified.stop() == 0 and plaintext.stop() == 0
    finally:
        assert server.stop() == 0


def test_stops_on_sigterm(stack: Stack, tmp_path: Path) -> None:
    front = GatewayProcess(stack.server.target, tmp_path / "gateway.log")
    front.process.send_signal(signal.SIGTERM)
    assert front.process.wait(timeout=15) == 0
    assert "stopping" in front.log()
    front.stop()


def test_a_request_id_in_the_body_or_the_query_creates_once(admin: Rest) -> None:
    request_id = str(uuid.uuid4())
    name = unique("p")
    path = f"/api/v1/projects?request_id={request_id}"
    first = admin.ok("POST", path, {"name": name})
    assert admin.ok("POST", path, {"name": name}) == first
    source = {"source": {"title": "t"}, "request_id": request_id}
    made = admin.ok("PUT", f"/api/v1/sources/{name}/inbox", source)
    assert admin.ok("PUT", f"/api/v1/sources/{name}/inbox", source) == made
    malformed = admin.call("PUT", f"/api/v1/sources/{name}/other", {"request_id": "nope"})
    assert malformed.status == 400 and malformed.violations() == ["request_id"]

"""API keys and the loopback rule, the WebSocket stream, and the ``workbench serve`` command."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from workbench_serving.settings import InsecureBindError, ServingSettings


def test_create_app_refuses_a_public_bind_without_keys() -> None:
    from workbench_serving.app import create_app

    with pytest.raises(InsecureBindError, match="WORKBENCH_API_KEYS"):
        create_app(ServingSettings(host="0.0.0.0", api_keys=[]))
    # With keys it is allowed (nothing loads until the app starts).
    create_app(ServingSettings(host="0.0.0.0", api_keys=["k"]))


def test_api_keys_come_from_a_comma_separated_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_API_KEYS", "alpha, beta")
    monkeypatch.setenv("WORKBENCH_MODELS", "tiny-llama")
    s = ServingSettings()
    assert s.api_keys == ["alpha", "beta"]
    assert s.models == ["tiny-llama"]


def test_serve_cli_refuses_public_bind_and_says_why() -> None:
    from workbench_serving.cli import serve

    result = CliRunner().invoke(
        serve, ["--host", "0.0.0.0", "--model", "tiny-llama"], env={"WORKBENCH_API_KEYS": ""}
    )
    assert result.exit_code != 0
    assert "refusing to serve on '0.0.0.0' without API keys" in result.output


def test_serve_cli_module_stays_import_light() -> None:
    code = (
        "import sys, workbench_serving.cli, workbench_serving;"
        "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'diffusers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.fixture(scope="module")
def keyed_server(server_factory: Any) -> Iterator[Any]:
    settings = ServingSettings(
        models=["tiny-llama"], training_models=[], api_keys=["s3cret"], device="cpu"
    )
    running = server_factory(settings)
    yield running
    running.stop()


def test_keys_are_required_when_configured(keyed_server: Any) -> None:
    with keyed_server.client() as c:
        assert c.get("/api/v1/healthz").status_code == 200  # probes stay open
        r = c.get("/api/v1/capabilities")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert c.get("/api/v1/capabilities", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/api/v1/capabilities", headers={"X-API-Key": "s3cret"}).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/models", headers=bearer).status_code == 200
        assert c.get("/metrics").status_code == 401


def test_openai_client_authenticates_with_bearer(keyed_server: Any) -> None:
    import openai

    bad = openai.OpenAI(base_url=keyed_server.base_url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=keyed_server.base_url + "/v1", api_key="s3cret", max_retries=0)
    assert [m.id for m in good.models.list()] == ["tiny-llama"]


def test_websocket_streams_tokens_then_done(server: Any) -> None:
    import websockets

    async def go() -> list[dict[str, Any]]:
        url = server.base_url.replace("http://", "ws://") + "/api/v1/ws"
        async with websockets.connect(url) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "sample",
                        "id": "a",
                        "request": {
                            "model": "tiny-llama",
                            "prompt": "hello",
                            "sampling_params": {"max_tokens": 5, "seed": 3},
                        },
                    }
                )
            )
            await ws.send(
                json.dumps(
                    {"type": "sample", "id": "b", "request": {"model": "nope", "prompt": "x"}}
                )
            )
            got: list[dict[str, Any]] = []
            while sum(1 for m in got if m["type"] in ("done", "error")) < 2:
                got.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=60)))
            return got

    messages = asyncio.run(go())
    a = [m for m in messages if m["id"] == "a"]
    assert a[-1]["type"] == "done"
    tokens = [m["token"] for m in a if m["type"] == "token"]
    assert tokens == a[-1]["response"]["sequences"][0]["tokens"]
    b = [m for m in messages if m["id"] == "b"]
    assert b[0]["type"] == "error" and b[0]["error"]["param"] == "model"


def test_websocket_rejects_a_malformed_message_and_stays_open(server: Any) -> None:
    import websockets

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        url = server.base_url.replace("http://", "ws://") + "/api/v1/ws"
        async with websockets.connect(url) as ws:
            await ws.send("{not json")
            first = json.loads(await ws.recv())
            await ws.send(
                json.dumps(
                    {
                        "type": "sample",
                        "request": {"model": "tiny-llama", "prompt": "x", "num_samples": 0},
                    }
                )
            )
            second = json.loads(await ws.recv())
            return first, second

    first, second = asyncio.run(go())
    assert first["type"] == "error" and first["error"]["param"] == "body"
    assert second["type"] == "error" and second["error"]["param"] == "num_samples"


def test_websocket_needs_the_key_too(keyed_server: Any) -> None:
    import websockets

    url = keyed_server.base_url.replace("http://", "ws://") + "/api/v1/ws"

    async def go() -> dict[str, Any]:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(url):
                pass
        async with websockets.connect(url + "?api_key=s3cret") as ws:
            await ws.send(json.dumps({"model": "tiny-llama", "prompt": "hi"}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                if msg["type"] in ("done", "error"):
                    return msg

    assert asyncio.run(go())["type"] == "done"

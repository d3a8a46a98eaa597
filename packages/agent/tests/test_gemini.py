"""GeminiLLM against a local server speaking Gemini's REST and SSE wire format (not an SDK mock)."""

from __future__ import annotations

import pytest

from workbench_agent import GeminiLLM, Message, ToolCall, ToolRegistry, run_agent, tool
from workbench_core.retry import RetryPolicy

from ._servers import FakeGemini, call_chunk, serve, text_chunk

FAST = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.05, jitter=0.0)


def _llm(url: str, sleeps: list[float] | None = None, **kw: object) -> GeminiLLM:
    async def record(delay: float) -> None:
        if sleeps is not None:
            sleeps.append(delay)

    return GeminiLLM(
        "gemini-fake",
        api_key="test-key",
        base_url=url,
        retry=FAST,
        sleep=record,
        **kw,  # type: ignore[arg-type]
    )


async def test_generate_maps_roles_system_instruction_tools_and_max_tokens() -> None:
    fake = FakeGemini([call_chunk("add", {"a": 1, "b": 2}, "c1")])
    with serve(fake.app) as url:
        llm = _llm(url, max_output_tokens=77)
        schema = tool(lambda a, b: a + b, name="add", description="Add.").schema()
        out = await llm.generate(
            [
                Message.system("be brief"),
                Message.user("hi"),
                Message.assistant("", [ToolCall(id="c0", name="add", args={"a": 0, "b": 0})]),
                Message.tool("0", tool_call_id="c0", name="add"),
            ],
            [schema],
        )
        await llm.aclose()
    assert out.tool_calls == [ToolCall(id="c1", name="add", args={"a": 1, "b": 2})]
    assert out.usage.input_tokens == 7 and out.usage.output_tokens == 3
    req = fake.requests[0]
    assert req["method"] == "generateContent" and req["model"] == "gemini-fake"
    assert req["headers"]["x-goog-api-key"] == "test-key"
    body = req["body"]
    assert body["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"][0]["functionCall"]["name"] == "add"
    fr = body["contents"][2]["parts"][0]["functionResponse"]
    assert fr["name"] == "add" and fr["response"] == {"result": 0}
    decl = body["tools"][0]["functionDeclarations"][0]
    # Protobuf JSON accepts either spelling; the SDK decides which it sends.
    params = decl.get("parametersJsonSchema") or decl.get("parameters_json_schema")
    assert decl["name"] == "add" and params["required"] == ["a", "b"]
    assert body["generationConfig"]["maxOutputTokens"] == 77
    assert "automaticFunctionCalling" not in body  # a client-side setting, never sent


async def test_stream_yields_text_deltas_over_sse() -> None:
    chunks = [text_chunk("你好"), text_chunk("，世界", finish="STOP", usage=(5, 4))]
    fake = FakeGemini([chunks])
    with serve(fake.app) as url:
        llm = _llm(url)
        deltas = [d async for d in llm.stream([Message.user("打个招呼")])]
        await llm.aclose()
    assert "".join(d.text for d in deltas) == "你好，世界"
    assert deltas[-1].usage is not None and deltas[-1].usage.output_tokens == 4
    req = fake.requests[0]
    assert req["method"] == "streamGenerateContent" and req["query"]["alt"] == "sse"
    assert req["body"]["contents"][0]["parts"][0]["text"] == "打个招呼"


async def test_429_then_success_is_retried_honouring_retry_info() -> None:
    error = {
        "error": {
            "code": 429,
            "message": "quota",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}
            ],
        }
    }
    fake = FakeGemini([{"status": 429, "body": error}, text_chunk("ok", finish="STOP")])
    with serve(fake.app) as url:
        sleeps: list[float] = []
        llm = _llm(url, sleeps)
        out = await llm.generate([Message.user("x")])
        await llm.aclose()
    assert out.text == "ok"
    assert len(fake.requests) == 2
    assert sleeps == [0.3]  # the server's hint, not the 0.01 s policy backoff


async def test_503_with_retry_after_header_then_stream_succeeds() -> None:
    unavailable = {
        "status": 503,
        "headers": {"Retry-After": "2"},
        "body": {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}},
    }
    fake = FakeGemini([unavailable, [text_chunk("fine", finish="STOP")]])
    with serve(fake.app) as url:
        sleeps: list[float] = []
        llm = _llm(url, sleeps)
        deltas = [d async for d in llm.stream([Message.user("x")])]
        await llm.aclose()
    assert "".join(d.text for d in deltas) == "fine"
    assert len(fake.requests) == 2
    assert sleeps == [2.0]  # Retry-After header


async def test_400_is_not_retried() -> None:
    from google.genai import errors

    bad = {
        "status": 400,
        "body": {"error": {"code": 400, "message": "bad field", "status": "INVALID_ARGUMENT"}},
    }
    fake = FakeGemini([bad, text_chunk("never")])
    with serve(fake.app) as url:
        llm = _llm(url)
        with pytest.raises(errors.ClientError):
            await llm.generate([Message.user("x")])
        await llm.aclose()
    assert len(fake.requests) == 1


async def test_react_loop_runs_native_function_calls_through_gemini() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    fake = FakeGemini(
        [[call_chunk("add", {"a": 2, "b": 3}, "c9")], [text_chunk("5", finish="STOP")]]
    )
    with serve(fake.app) as url:
        llm = _llm(url)
        history = [Message.user("2+3?")]
        result = await run_agent(llm, history, ToolRegistry([add]))
        await llm.aclose()
    assert result.status == "done" and result.final == "5"
    second = fake.requests[1]["body"]["contents"]
    assert second[-1]["parts"][0]["functionResponse"] == {
        "id": "c9",
        "name": "add",
        "response": {"result": 5},
    }


async def test_cancel_mid_stream_closes_the_http_stream_to_the_server() -> None:
    import asyncio

    from workbench_core.cancel import CancelToken

    chunks = [text_chunk(f"word{i} ") for i in range(50)]
    fake = FakeGemini([chunks], chunk_delay=0.1)
    with serve(fake.app) as url:
        llm = _llm(url)
        token = CancelToken()
        events: list[str] = []

        def emit(t: str, _d: dict[str, object]) -> None:
            events.append(t)
            if t == "llm_delta":
                token.cancel("stop streaming")

        result = await run_agent(
            llm, [Message.user("long")], ToolRegistry(), emit=emit, token=token
        )
        assert result.status == "cancelled"
        # The fake server's generator ends because the client went away, long before 50 chunks.
        closed = await asyncio.to_thread(fake.stream_closed.wait, 3.0)
        await llm.aclose()
    assert closed
    assert events.count("llm_delta") == 1 and events[-2:] == ["cancelled", "run_done"]

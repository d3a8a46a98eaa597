"""Built-in workbench tools against a real serving server (tiny presets) and a real tracker
(SQLite in a temp dir), run through the ToolRunner as the agent runs them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from workbench_agent import (
    AgentRuntime,
    LLMResponse,
    Message,
    ScriptedLLM,
    ServedLLM,
    ToolCall,
    ToolRegistry,
    ToolRunner,
    WorkbenchTools,
    run_agent,
    tracker_observer,
)
from workbench_core.cancel import CancelToken

pytestmark = pytest.mark.slow


@pytest.fixture
def tracker_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


def runner_for(url: str, tracker_url: str, tmp_path: Path) -> tuple[ToolRunner, WorkbenchTools]:
    tools = WorkbenchTools(url, tracker_store=tracker_url, image_dir=tmp_path / "images")
    return ToolRunner(ToolRegistry(tools.specs())), tools


async def call(runner: ToolRunner, name: str, **args: Any) -> Any:
    result = await runner.run(ToolCall(name=name, args=args))
    assert result.ok, result.error
    return result.output


async def test_sample_text_generate_image_and_describe_it(
    serving_url: str, tracker_url: str, tmp_path: Path
) -> None:
    runner, _ = runner_for(serving_url, tracker_url, tmp_path)
    out = await call(runner, "sample_text", prompt="Once upon", max_tokens=8, seed=1)
    assert out["model"] == "tiny-llama" and isinstance(out["text"], str)
    assert out["finish_reason"] in ("length", "stop")

    img = await call(runner, "generate_image", prompt="a red cube", seed=3)
    path = Path(img["path"])
    assert path.parent == tmp_path / "images"
    png = await asyncio.to_thread(path.read_bytes)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    desc = await call(runner, "describe_image", image=str(path), max_tokens=4)
    assert isinstance(desc["text"], str) and desc["finish_reason"] in ("length", "stop")


async def test_bad_arguments_and_server_errors_come_back_as_tool_errors(
    serving_url: str, tracker_url: str, tmp_path: Path
) -> None:
    runner, _ = runner_for(serving_url, tracker_url, tmp_path)
    bad = await runner.run(ToolCall(name="generate_image", args={"prompt": "x", "width": 30}))
    assert not bad.ok and "width" in (bad.error or "")  # the server's 400 names the field
    missing = await runner.run(ToolCall(name="sample_text", args={"prompt": "x", "model": "nope"}))
    assert not missing.ok and "nope" in (missing.error or "")


async def test_finetune_runs_in_background_logs_losses_and_its_model_samples(
    serving_url: str, tracker_url: str, tmp_path: Path
) -> None:
    runner, tools = runner_for(serving_url, tracker_url, tmp_path)
    started = await call(
        runner,
        "start_finetune",
        examples=["the cat sat on the mat", "the dog sat on the log"],
        steps=3,
        learning_rate=0.01,
    )
    assert started["status"] in ("starting", "running", "done")
    job_id = started["job_id"]
    deadline = time.monotonic() + 240
    while True:
        status = await call(runner, "finetune_status", job_id=job_id)
        if status["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)
    assert status["status"] == "done", status["error"]
    assert status["step"] == 3 and len(status["losses"]) == 3
    assert status["model_name"]

    runs = await call(runner, "search_runs", project="agent-finetunes")
    assert [r["id"] for r in runs] == [status["tracker_run_id"]]
    assert runs[0]["status"] == "finished" and runs[0]["summary"]["final_loss"] == pytest.approx(
        status["losses"][-1], rel=1e-5
    )
    metrics = await call(runner, "get_metrics", run_id=status["tracker_run_id"], keys=["loss"])
    assert metrics["metrics"]["loss"]["steps"] == [1, 2, 3]
    assert metrics["metrics"]["loss"]["values"] == pytest.approx(status["losses"], rel=1e-5)

    out = await call(
        runner, "sample_text", prompt="the cat", max_tokens=4, model=status["model_name"]
    )
    assert out["model"] == status["model_name"]
    unknown = await runner.run(ToolCall(name="finetune_status", args={"job_id": "ft_nope"}))
    assert not unknown.ok and "job_id" in (unknown.error or "")
    del tools


async def test_tracker_tools_search_and_compare_runs(tmp_path: Path, tracker_url: str) -> None:
    import workbench_tracker as wt

    ids = []
    for lr in (0.1, 0.01):
        run = wt.init(
            project="cmp",
            config={"lr": lr, "batch": 8},
            tags=["sweep"],
            store=tracker_url,
            capture_env=False,
        )
        for step in range(1, 11):
            run.log({"loss": lr * 10 / step, "acc": step / 10}, step=step)
        run.finish()
        ids.append(run.id)
    runner, _ = runner_for("http://127.0.0.1:9", tracker_url, tmp_path)
    found = await call(runner, "search_runs", project="cmp", tags=["sweep"])
    assert sorted(r["id"] for r in found) == sorted(ids)
    cmp = await call(runner, "compare_runs", run_ids=ids)
    assert cmp["config_differences"] == {"lr": {ids[0]: 0.1, ids[1]: 0.01}}
    assert set(cmp["metrics"]) == {"acc", "loss"}
    assert cmp["metrics"]["loss"][ids[0]]["last"] == pytest.approx(0.1)
    assert cmp["metrics"]["loss"][ids[1]]["min"] == pytest.approx(0.01)
    few = await call(runner, "get_metrics", run_id=ids[0], points=5)
    assert len(few["metrics"]["loss"]["steps"]) <= 5
    one = await runner.run(ToolCall(name="compare_runs", args={"run_ids": [ids[0]]}))
    assert not one.ok and "run_ids" in (one.error or "")


async def test_agent_run_is_logged_as_a_tracker_run(tracker_url: str) -> None:
    import workbench_tracker as wt

    from ._servers import FakeGemini  # noqa: F401  (same helpers module; keeps imports honest)

    rt = AgentRuntime(
        ScriptedLLM([LLMResponse(tool_calls=[ToolCall(name="nothing")]), "done"]),
        ToolRegistry(),
        observer=tracker_observer(store=tracker_url, project="agent-test"),
    )
    session = rt.create_session()
    handle = rt.start_run(session.id, "log me")
    assert handle.task is not None
    result = await handle.task
    assert result.status == "done"
    (run,) = wt.Api(tracker_url).runs("agent-test")
    assert run.name == handle.id and run.status == "finished"
    assert run.summary["steps"] == 2 and run.summary["tool_calls"] == 1
    assert run.summary["tool_errors"] == 1  # "nothing" is not a registered tool
    assert set(run.metric_keys()) >= {"llm_latency_ms", "output_tokens", "tool_latency_ms"}
    steps, _ = run.metric("llm_latency_ms")
    assert list(steps) == [1, 2]


async def test_served_llm_streams_from_the_real_server_and_cancel_closes_the_request(
    serving_url: str,
) -> None:
    llm = ServedLLM(base_url=serving_url, max_tokens=200, seed=0, temperature=1.0)
    deltas = [d async for d in llm.stream([Message.user("hello")])]
    assert any(d.text for d in deltas)
    usage = deltas[-1].usage
    assert usage is not None and usage.output_tokens > 2
    reference = usage.output_tokens  # seeded: the same prompt would generate exactly this many

    token = CancelToken()
    events: list[str] = []

    def emit(t: str, d: dict[str, Any]) -> None:
        events.append(t)
        if t == "llm_delta":
            token.cancel("enough")

    before = completion_tokens(serving_url)
    history = [Message.user("hello")]
    result = await run_agent(llm, history, ToolRegistry(), emit=emit, token=token)
    assert result.status == "cancelled" and result.reason == "enough"
    assert events[-2:] == ["cancelled", "run_done"]
    assert events.count("llm_delta") <= 2
    # Server side: the request was dropped, so it did not run to its seeded length.
    await asyncio.sleep(1.0)
    assert completion_tokens(serving_url) - before < reference


def completion_tokens(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("workbench_tokens_total{") and 'kind="completion"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_default_app_serves_the_builtin_tools_and_logs_runs_to_the_tracker(
    serving_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    import workbench_tracker as wt
    from workbench_agent import create_app

    from ._servers import serve

    tracker = f"sqlite:///{tmp_path / 'default.db'}"
    monkeypatch.setenv("WORKBENCH_TRACKER_URL", tracker)
    llm = ScriptedLLM(
        [
            LLMResponse(
                tool_calls=[
                    ToolCall(name="sample_text", args={"prompt": "hi", "max_tokens": 3, "seed": 0})
                ]
            ),
            lambda messages: "sampled: " + messages[-1].content[:40],
        ]
    )
    app = create_app(llm=llm, base_url=serving_url)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            names = [t["name"] for t in (await c.get("/tools")).json()["tools"]]
            assert names == sorted(
                [
                    "compare_runs",
                    "describe_image",
                    "finetune_status",
                    "generate_image",
                    "get_metrics",
                    "sample_text",
                    "search_runs",
                    "start_finetune",
                ]
            )
            sid = (await c.post("/sessions")).json()["id"]
            run_id = (await c.post(f"/sessions/{sid}/runs", json={"prompt": "sample"})).json()["id"]
            for _ in range(600):
                run = (await c.get(f"/sessions/{sid}/runs/{run_id}")).json()
                if "result" in run:
                    break
                await asyncio.sleep(0.05)
    assert run["result"]["status"] == "done" and run["result"]["tool_calls"] == 1
    assert '"model": "tiny-llama"' in run["result"]["final"]
    (logged,) = wt.Api(tracker).runs("agent")
    assert logged.name == run_id and logged.summary["status"] == "done"


async def test_served_model_answers_a_run_without_tools(serving_url: str) -> None:
    llm = ServedLLM(base_url=serving_url, max_tokens=6, seed=0)
    history = [Message.system("Be brief."), Message.user("Say hello")]
    result = await run_agent(llm, history, ToolRegistry())
    assert result.status == "done" and result.final is not None
    assert result.usage.output_tokens > 0 and history[-1].role == "assistant"


async def test_a_cancelled_tool_drops_its_request_on_the_model_server(
    serving_url: str, tracker_url: str, tmp_path: Path
) -> None:
    from workbench_core.cancel import Cancelled

    runner, _ = runner_for(serving_url, tracker_url, tmp_path)
    args = {"prompt": "hello", "max_tokens": 250, "seed": 7, "temperature": 1.0}
    before = completion_tokens(serving_url)
    reference = await runner.run(ToolCall(name="sample_text", args=args))
    assert reference.ok
    reference_tokens = completion_tokens(serving_url) - before
    assert reference_tokens > 0  # seeded: the same call would generate exactly this many

    token = CancelToken()
    task = asyncio.create_task(runner.run(ToolCall(name="sample_text", args=args), token))
    await asyncio.sleep(0.1)
    before = completion_tokens(serving_url)
    token.cancel("no longer needed")
    with pytest.raises(Cancelled):
        await task
    # Wait well past the time the whole request took: had it kept running, it would be counted.
    await asyncio.sleep(max(1.0, 2 * reference.duration_s))
    assert completion_tokens(serving_url) - before < reference_tokens

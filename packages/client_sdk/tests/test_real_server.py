"""The client against a real workbench-serving server on loopback (tiny presets)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, SERVED_MODELS, TEXT_MODEL

import workbench_client as wc
from workbench_client import AsyncWorkbench, ServiceClient, Workbench
from workbench_client.types import ModelInput, SamplingParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(server: str) -> ServiceClient:
    return ServiceClient(base_url=server, retry_policy=FAST)


def test_capabilities_list_supported_models_in_tinkers_shape(service: ServiceClient) -> None:
    caps = service.get_server_capabilities()
    names = [m.model_name for m in caps.supported_models]
    assert TEXT_MODEL in names
    assert any(m.name == TEXT_MODEL and m.kind == "text" for m in caps.models)


def test_health_and_readiness(server: str) -> None:
    with Workbench(base_url=server) as wb:
        assert wb.service.health().status == "ok"
        assert wb.service.ready().models[TEXT_MODEL] == "ready"


def test_sampling_client_returns_num_samples_sequences(service: ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    tok = sampler.get_tokenizer()
    prompt = ModelInput.from_ints(tok.encode("Hello there"))
    fut = sampler.sample(prompt, 3, SamplingParams(max_tokens=4, seed=7))
    out = fut.result(timeout=120)
    assert len(out.sequences) == 3
    assert all(len(s.tokens) <= 4 for s in out.sequences)
    assert out.prompt_tokens == prompt.length


async def test_api_futures_can_be_awaited_from_another_event_loop(service: ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    out = await sampler.sample("Hi", 1, SamplingParams(max_tokens=2))
    again = await sampler.sample_async("Hi", 1, SamplingParams(max_tokens=2))
    assert len(out.sequences) == len(again.sequences) == 1


def test_tokenizer_encode_and_decode_match_the_server(service: ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    tok = sampler.get_tokenizer()
    text = "The quick brown fox"
    out = sampler.sample(text, 2, SamplingParams(max_tokens=6, seed=3)).result(timeout=120)
    # The server tokenized the same text to the same number of tokens...
    assert out.prompt_tokens == len(tok.encode(text))
    # ...and decodes sampled ids to the text our tokenizer gives for them.
    for seq in out.sequences:
        assert tok.decode(seq.tokens) == seq.text
    # Sampling from our own ids gives the same continuation as from the text (same seed).
    again = sampler.sample(
        ModelInput.from_ints(tok.encode(text)), 2, SamplingParams(max_tokens=6, seed=3)
    )
    assert [s.tokens for s in again.result(timeout=120).sequences] == [
        s.tokens for s in out.sequences
    ]


def test_compute_logprobs_has_one_entry_per_token_and_none_first(service: ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    ids = sampler.get_tokenizer().encode("one two three")
    lp = sampler.compute_logprobs(ids).result(timeout=120)
    assert len(lp) == len(ids)
    assert lp[0] is None and all(isinstance(x, float) and x <= 0 for x in lp[1:])


async def test_async_stream_gives_the_same_tokens_as_its_final_response(server: str) -> None:
    async with AsyncWorkbench(base_url=server, retry_policy=FAST) as wb:
        stream = await wb.sampling.stream(
            TEXT_MODEL, "Once upon", sampling_params=SamplingParams(max_tokens=5, seed=1)
        )
        events = [ev async for ev in stream]
    assert stream.final is not None
    assert [e.token for e in events] == stream.final.sequences[0].tokens


def test_sync_stream_iterates_token_events(server: str) -> None:
    with Workbench(base_url=server, retry_policy=FAST) as wb:
        stream = wb.sampling.stream(TEXT_MODEL, "Once", sampling_params={"max_tokens": 3})
        tokens = [ev.token for ev in stream]
        assert tokens == stream.final.sequences[0].tokens


def test_unknown_model_is_a_not_found_error_naming_the_field(server: str) -> None:
    with (
        Workbench(base_url=server, retry_policy=FAST) as wb,
        pytest.raises(wc.NotFoundError) as info,
    ):
        wb.sampling.sample("no-such-model", "hi")
    assert info.value.param == "model"
    assert "no-such-model" in info.value.message
    assert info.value.request_id


def test_an_out_of_range_field_is_a_4xx_naming_it(server: str) -> None:
    with (
        Workbench(base_url=server, retry_policy=FAST) as wb,
        pytest.raises(wc.APIStatusError) as info,
    ):
        wb.sampling.sample(TEXT_MODEL, "hi", sampling_params={"max_tokens": 0})
    assert 400 <= info.value.status_code < 500
    assert info.value.param == "sampling_params.max_tokens"


def test_one_sync_client_is_safe_to_share_between_threads(server: str) -> None:
    errors: list[BaseException] = []
    results: list[int] = []
    with Workbench(base_url=server, retry_policy=FAST) as wb:

        def work() -> None:
            try:
                for _ in range(3):
                    out = wb.sampling.sample(TEXT_MODEL, "hi", sampling_params={"max_tokens": 2})
                    results.append(len(out.sequences))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors
    assert results == [1] * 18


def test_a_blocking_call_on_the_clients_loop_thread_raises_instead_of_deadlocking(
    server: str,
) -> None:
    with Workbench(base_url=server, retry_policy=FAST) as wb:

        async def inside() -> None:
            wb.service.health()

        with pytest.raises(wc.SyncInAsyncContextError, match=r"deadlock|wait on itself"):
            wb.runner.run(inside(), timeout=30)


@pytest.mark.skipif("tiny-sd" not in SERVED_MODELS, reason="test server started without tiny-sd")
async def test_images_generate_is_seeded_and_decodes_to_png(server: str) -> None:
    async with AsyncWorkbench(base_url=server, retry_policy=FAST) as wb:
        a = await wb.images.generate("tiny-sd", "a red square", seed=5, n=2)
        b = await wb.images.generate("tiny-sd", "a red square", seed=5, n=2)
    assert len(a.images) == 2 and a.seed == 5
    assert [i.b64_png for i in a.images] == [i.b64_png for i in b.images]
    assert base64.b64decode(a.images[0].b64_png)[:4] == b"\x89PNG"


@pytest.mark.skipif(
    "tiny-qwen-vl" not in SERVED_MODELS, reason="test server started without tiny-qwen-vl"
)
def test_vision_accepts_bytes_paths_and_data_urls(server: str, tmp_path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, format="PNG")
    raw = buf.getvalue()
    path = tmp_path / "g.png"
    path.write_bytes(raw)
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    with Workbench(base_url=server, retry_policy=FAST) as wb:
        outs = [
            wb.vision.generate("tiny-qwen-vl", img, "What is it?", max_tokens=3, temperature=0.0)
            for img in (raw, path, url)
        ]
    assert outs[0].tokens == outs[1].tokens == outs[2].tokens
    assert outs[0].finish_reason in ("stop", "length")


def test_deferred_calls_are_retrieved_through_futures(server: str) -> None:
    from workbench_core.protocol import SampleResponse

    body = {"model": TEXT_MODEL, "prompt": "hi", "sampling_params": {"max_tokens": 2}}
    with Workbench(base_url=server, retry_policy=FAST) as wb:
        accepted = wb.futures.submit("sample", body)
        out = wb.futures.wait(accepted.request_id, SampleResponse, poll_timeout=10)
        assert len(out.sequences) == 1
        with pytest.raises(wc.NotFoundError):
            wb.futures.retrieve("fut_does_not_exist", timeout=0)


@pytest.fixture(scope="module")
def keyed_server(server: str) -> Iterator[str]:
    """A second real server that requires an API key (built from the same model cache)."""
    from _servers import UvicornThread

    from workbench_serving.app import create_app
    from workbench_serving.settings import ServingSettings

    settings = ServingSettings(models=[TEXT_MODEL], training_models=[], api_keys=["key-1"])
    srv = UvicornThread(create_app(settings)).start()
    yield srv.url
    srv.stop()


def test_a_keyed_server_rejects_no_key_with_a_hint_and_accepts_the_env_key(
    keyed_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Workbench(base_url=keyed_server, retry_policy=FAST) as wb:
        with pytest.raises(wc.AuthenticationError, match="WORKBENCH_API_KEY"):
            wb.service.capabilities()
    with Workbench(base_url=keyed_server, api_key="wrong", retry_policy=FAST) as wb:
        with pytest.raises(wc.AuthenticationError) as info:
            wb.service.capabilities()
        assert "WORKBENCH_API_KEY" not in info.value.message
    monkeypatch.setenv("WORKBENCH_API_KEY", "key-1")
    with Workbench(base_url=keyed_server, retry_policy=FAST) as wb:
        assert any(m.name == TEXT_MODEL for m in wb.service.capabilities().models)

"""Function calling and structured outputs on /v1, through the official ``openai`` package.

The tiny model has random weights: every schema-valid call or JSON document below is the
grammar's doing, which is the point (a forced call must be valid whatever the model).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def oa(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def engine(server: Any) -> Any:
    return server.state.models["tiny-llama"].engine


def assert_valid_calls(calls: Any, names: set[str]) -> None:
    assert calls, "expected tool calls"
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
    assert len({c.id for c in calls}) == len(calls)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_named_tool_choice_always_gets_a_schema_valid_call(oa: openai.OpenAI, seed: int) -> None:
    chat = oa.chat.completions.create(
        model="tiny-llama",
        messages=ASK,
        tools=[WEATHER, ADD],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        seed=seed,
        temperature=1.0,
    )
    choice = chat.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert_valid_calls(choice.message.tool_calls, {"get_weather"})
    assert len(choice.message.tool_calls or []) == 1


def test_required_without_parallel_calls_gives_exactly_one_valid_call(oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model="tiny-llama",
        messages=ASK,
        tools=[WEATHER, ADD],
        tool_choice="required",
        parallel_tool_calls=False,
        n=3,
        seed=11,
    )
    for choice in chat.choices:
        assert choice.finish_reason == "tool_calls"
        assert_valid_calls(choice.message.tool_calls, {"get_weather", "add"})
        assert len(choice.message.tool_calls or []) == 1


def test_required_with_parallel_calls_gives_valid_calls(oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model="tiny-llama", messages=ASK, tools=[WEATHER, ADD], tool_choice="required", seed=5
    )
    assert chat.choices[0].finish_reason == "tool_calls"
    assert_valid_calls(chat.choices[0].message.tool_calls, {"get_weather", "add"})


def test_streamed_tool_call_deltas_rebuild_a_valid_call_and_usage_comes_last(
    oa: openai.OpenAI,
) -> None:
    stream = oa.chat.completions.create(
        model="tiny-llama",
        messages=ASK,
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
        seed=7,
    )
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    fragments = 0
    chunks = list(stream)
    for chunk in chunks[:-1]:
        assert chunk.usage is None
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
                if d.id:
                    assert entry["id"] is None, "the id comes once, in the call's first delta"
                    entry["id"], entry["name"] = d.id, d.function.name
                if d.function and d.function.arguments:
                    entry["arguments"] += d.function.arguments
                    fragments += 1
            finish = choice.finish_reason or finish
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    assert finish == "tool_calls"
    assert fragments > 1, "arguments arrive in pieces as they are generated"
    assert sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        assert call["id"].startswith("call_") and call["name"] == "get_weather"
        jsonschema.validate(json.loads(call["arguments"]), SCHEMAS["get_weather"])


def test_stream_without_include_usage_sends_no_usage(oa: openai.OpenAI) -> None:
    chunks = list(
        oa.chat.completions.create(
            model="tiny-llama", messages=ASK, max_tokens=4, stream=True, seed=1
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_json_schema_response_format_strict_is_valid_json(oa: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
        "additionalProperties": False,
    }
    chat = oa.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "A film, as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "film", "schema": schema, "strict": True},
        },
        max_tokens=60,
        n=2,
        seed=3,
    )
    for choice in chat.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content or ""), schema)


def test_json_object_response_format_is_a_json_object(oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "JSON please"}],
        response_format={"type": "json_object"},
        max_tokens=40,
        seed=4,
    )
    assert isinstance(json.loads(chat.choices[0].message.content or ""), dict)


def test_history_with_calls_and_results_renders_through_the_tool_template(
    oa: openai.OpenAI, engine: Any
) -> None:
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"},
    ]
    chat = oa.chat.completions.create(
        model="tiny-llama", messages=history, tools=[WEATHER], max_tokens=3, seed=1
    )
    rendered = engine.tokenizer.apply_chat_template(
        [
            ASK[0],
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "function": {
                            "name": "get_weather",
                            "arguments": {"city": "Paris", "unit": "c"},
                        }
                    }
                ],
            },
            {"role": "tool", "content": "21 degrees"},
        ],
        tools=[WEATHER],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    assert chat.usage is not None and chat.usage.prompt_tokens == len(rendered)
    text = engine.tokenizer.decode(rendered)
    assert "<tool_response>\n21 degrees" in text and "get_weather" in text


def test_a_template_without_tools_gets_the_documented_fallback(
    oa: openai.OpenAI, engine: Any
) -> None:
    plain = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{{ message['content'] }}{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    saved = engine.tokenizer.chat_template
    engine.tokenizer.chat_template = plain
    try:
        chat = oa.chat.completions.create(
            model="tiny-llama",
            messages=ASK,
            tools=[ADD],
            tool_choice="required",
            parallel_tool_calls=False,
            seed=2,
        )
        bare = oa.chat.completions.create(model="tiny-llama", messages=ASK, max_tokens=1)
    finally:
        engine.tokenizer.chat_template = saved
    assert chat.choices[0].finish_reason == "tool_calls"
    assert_valid_calls(chat.choices[0].message.tool_calls, {"add"})
    assert chat.usage is not None and bare.usage is not None
    # The fallback adds a system turn listing the tools.
    assert chat.usage.prompt_tokens > bare.usage.prompt_tokens + 40


@pytest.fixture
def raw(server: Any) -> Iterator[Any]:
    with server.client() as c:
        yield c


def _chat(raw: Any, **body: Any) -> Any:
    return raw.post("/v1/chat/completions", json={"model": "tiny-llama", "messages": ASK, **body})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools.0.function.name",
        ),
        (
            {
                "tools": [
                    WEATHER,
                    {
                        "type": "function",
                        "function": {
                            "name": "x",
                            "parameters": {"type": "object", "properties": {"a": {"type": "nope"}}},
                        },
                    },
                ]
            },
            "tools.1.function.parameters",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "x", "parameters": {"type": "array"}}}
                ]
            },
            "tools.0.function.parameters",
        ),
        ({"tools": [ADD, ADD]}, "tools.1.function.name"),
        (
            {"tools": [ADD], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [ADD], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "schema": {"type": "object", "properties": {"a": {"type": "nope"}}},
                        "strict": True,
                    },
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1.0}, "frequency_penalty"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"audio": {"voice": "x"}}, "audio"),
        ({"store": True}, "store"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"top_logprobs": 3, "logprobs": True}, "top_logprobs"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id"),
    ],
)
def test_bad_or_unsupported_fields_are_a_400_naming_them(raw: Any, body: Any, param: str) -> None:
    r = _chat(raw, **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text


def test_the_openai_package_raises_bad_request_for_an_invalid_tool(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(
            model="tiny-llama",
            messages=ASK,
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "required": 5}},
                }
            ],
        )
    assert "tools.0.function.parameters" in str(info.value)


def test_chat_logprobs_are_per_token(oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model="tiny-llama", messages=ASK, max_tokens=5, logprobs=True, seed=1
    )
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == chat.usage.completion_tokens  # type: ignore[union-attr]
    assert all(t.logprob <= 0 for t in content)


def test_completions_refuse_unsupported_fields_by_name(raw: Any) -> None:
    for body, param in (
        ({"suffix": "x"}, "suffix"),
        ({"logprobs": 2}, "logprobs"),
        ({"best_of": 3}, "best_of"),
    ):
        r = raw.post("/v1/completions", json={"model": "tiny-llama", "prompt": "a", **body})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_native_sample_takes_a_response_format(raw: Any) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    r = raw.post(
        "/api/v1/sample",
        json={
            "model": "tiny-llama",
            "prompt": "count",
            "num_samples": 2,
            "sampling_params": {
                "max_tokens": 24,
                "seed": 1,
                "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
            },
        },
    )
    assert r.status_code == 200, r.text
    for seq in r.json()["sequences"]:
        jsonschema.validate(json.loads(seq["text"]), schema)
    r = raw.post(
        "/api/v1/sample",
        json={
            "model": "tiny-llama",
            "prompt": "code",
            "sampling_params": {
                "max_tokens": 8,
                "response_format": {"type": "regex", "regex": "[A-Z]{2}[0-9]{2}"},
            },
        },
    )
    assert r.status_code == 200, r.text
    import re

    assert re.fullmatch("[A-Z]{2}[0-9]{2}", r.json()["sequences"][0]["text"])
    bad = raw.post(
        "/api/v1/sample",
        json={
            "model": "tiny-llama",
            "prompt": "x",
            "sampling_params": {"response_format": {"type": "regex", "regex": "(open"}},
        },
    )
    assert (
        bad.status_code == 400
        and bad.json()["error"]["param"] == "sampling_params.response_format.regex"
    ), bad.text


def _plan(parallel: bool = True) -> Any:
    from workbench_serving.api.structured import ToolDef, ToolPlan

    return ToolPlan(
        mode="auto", tools=[ToolDef.model_validate(t) for t in (WEATHER, ADD)], parallel=parallel
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>', ["add"]),
        ('{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}', ["get_weather"]),
        (
            '[{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "parameters": {"a": 3, "b": 4}}]',
            ["add", "add"],
        ),
        (
            '{"tool_calls": [{"function": {"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}}]}',
            ["add"],
        ),
        ('{"name": "add", "arguments": {"a": "one", "b": 2}}', None),  # fails the schema
        ('{"name": "nope", "arguments": {}}', None),  # not a declared tool
        ("The answer is 3.", None),
        (
            '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call> and more',
            None,
        ),
    ],
)
def test_auto_replies_are_read_as_calls_only_when_entirely_valid_calls(
    text: str, names: list[str] | None
) -> None:
    from workbench_serving.api.structured import parse_tool_calls

    calls = parse_tool_calls(text, _plan())
    assert (None if calls is None else [c.name for c in calls]) == names
    for call in calls or []:
        jsonschema.validate(json.loads(call.arguments), SCHEMAS[call.name])


def test_two_calls_are_content_when_parallel_calls_are_off() -> None:
    from workbench_serving.api.structured import parse_tool_calls

    text = '[{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "arguments": {"a": 3, "b": 4}}]'
    assert parse_tool_calls(text, _plan(parallel=False)) is None


@pytest.mark.parametrize(
    ("body", "param"),
    [({"style": "vivid"}, "style"), ({"quality": "hd"}, "quality"), ({"seed": 1}, "seed")],
)
def test_image_generation_fields_are_acted_on_or_refused(raw: Any, body: Any, param: str) -> None:
    r = raw.post("/v1/images/generations", json={"prompt": "a dot", "size": "32x32", **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_an_image_detail_other_than_auto_is_refused(raw: Any) -> None:
    part = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"},
    }
    r = _chat(raw, messages=[{"role": "user", "content": [part]}])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "messages.0.content.0.image_url.detail"


def test_a_template_that_rejects_the_tool_role_reads_results_as_user_turns(
    oa: openai.OpenAI, engine: Any
) -> None:
    strict = (
        "{% for message in messages %}"
        "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
        "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a":1,"b":2}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "3"},
    ]
    saved = engine.tokenizer.chat_template
    engine.tokenizer.chat_template = strict
    try:
        chat = oa.chat.completions.create(
            model="tiny-llama", messages=history, tools=[ADD], max_tokens=2, seed=1
        )
        from workbench_serving.api.structured import (
            ToolDef,
            ToolPlan,
            call_text,
            fallback_tools_prompt,
        )

        plan = ToolPlan(mode="auto", tools=[ToolDef.model_validate(ADD)])
        expected = engine.encode_chat(
            [
                {"role": "system", "content": fallback_tools_prompt(plan)},
                ASK[0],
                {"role": "assistant", "content": call_text([("add", {"a": 1, "b": 2})], plan)},
                {"role": "user", "content": "Result of add: 3"},
            ]
        )
    finally:
        engine.tokenizer.chat_template = saved
    assert chat.usage is not None and chat.usage.prompt_tokens == len(expected)


def test_auto_with_a_response_format_gives_calls_or_a_schema_valid_answer(
    oa: openai.OpenAI,
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    chat = oa.chat.completions.create(
        model="tiny-llama",
        messages=ASK,
        tools=[ADD],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        n=4,
        seed=9,
    )
    for choice in chat.choices:
        if choice.finish_reason == "tool_calls":
            assert_valid_calls(choice.message.tool_calls, {"add"})
        else:
            assert choice.finish_reason == "stop"
            jsonschema.validate(json.loads(choice.message.content or ""), schema)


def test_a_streamed_auto_reply_matches_the_unstreamed_one(oa: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": "tiny-llama",
        "messages": ASK,
        "tools": [ADD],
        "max_tokens": 12,
        # Seeded so that the replies include ones opening with "<" (held back until the end,
        # as a possible call) and with a blank (undecided until the next token).
        "seed": 3,
        "n": 8,
    }
    whole = oa.chat.completions.create(**kwargs)
    texts = [""] * 8
    calls: list[list[Any]] = [[] for _ in range(8)]
    finishes: list[str | None] = [None] * 8
    for chunk in oa.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            calls[choice.index] += choice.delta.tool_calls or []
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    for i, choice in enumerate(whole.choices):
        assert finishes[i] == choice.finish_reason
        if choice.message.tool_calls:
            assert [c.function.name for c in calls[i] if c.id] == [
                c.function.name for c in choice.message.tool_calls
            ]
        else:
            assert texts[i] == choice.message.content

"""PydanticAI's structured output on a served tiny model, through our /v1.

``Agent(output_type=Model)`` asks for an output tool with ``tool_choice: required``;
``NativeOutput`` asks for ``response_format: json_schema``. The model has random weights, so the
validated output is the grammar's doing.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


class City(BaseModel):
    name: str = Field(max_length=16)
    population: int
    coastal: bool


@pytest.fixture(scope="module")
def model(server: Any) -> OpenAIChatModel:
    provider = OpenAIProvider(base_url=server.base_url + "/v1", api_key="unused")
    return OpenAIChatModel("tiny-llama", provider=provider)


def test_output_type_gets_a_validated_model_from_the_output_tool(model: OpenAIChatModel) -> None:
    agent = Agent(model, output_type=City, model_settings={"seed": 1, "temperature": 1.0})
    result = agent.run_sync("Which city is the largest?")
    assert isinstance(result.output, City)
    assert len(result.output.name) <= 16
    # One request: the forced call was valid the first time, no retry prompt was needed.
    assert result.usage.requests == 1


def test_native_output_uses_response_format_json_schema(model: OpenAIChatModel) -> None:
    agent = Agent(model, output_type=NativeOutput(City), model_settings={"seed": 2})
    result = agent.run_sync("Describe a city.")
    assert isinstance(result.output, City)
    assert result.usage.requests == 1


async def test_streamed_structured_output(model: OpenAIChatModel) -> None:
    agent = Agent(model, output_type=City, model_settings={"seed": 3})
    async with agent.run_stream("A city, please.") as run:
        output = await run.get_output()
    assert isinstance(output, City)

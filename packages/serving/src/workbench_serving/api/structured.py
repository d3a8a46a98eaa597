"""Structured outputs and function calling for the HTTP layer, on top of constrained decoding.

What lives here, shared by ``/v1/chat/completions`` and the native ``/api/v1/sample``:

- ``response_format`` -> ``ConstraintSpec`` (``json_object``, ``json_schema``, ``regex``,
  ``grammar``), compiled before the request is queued so a bad schema is a 400 naming the field,
  not an error in the middle of a stream.
- OpenAI ``tools``: validation (names, duplicate names, JSON Schema of the parameters, each
  one compiled), ``tool_choice`` and ``parallel_tool_calls`` turned into a ``ToolPlan``.
- Prompt rendering: a chat template that mentions ``tools`` gets them (and the history's
  ``tool_calls`` / tool results) as Hugging Face templates expect; any other template gets the
  documented fallback: a system message listing the functions as JSON schemas and the reply
  format, assistant calls written as that JSON, tool results as ``tool`` messages (or ``user``
  messages when the template rejects the ``tool`` role).
- The reply format of a call: ``{"name": ..., "arguments": {...}}`` (a JSON array of them when
  parallel calls are allowed and forced); inside ``<tool_call>...</tool_call>`` blocks when the
  chat template uses them (Hermes / Qwen style). ``required`` and a named ``tool_choice`` are
  enforced by a grammar, so the call is schema-valid whatever the model; ``auto`` leaves the
  model free and parses what it wrote.
- ``ToolCallStreamer``: extracts calls from the text as it grows, for OpenAI's streamed
  ``tool_calls`` deltas (a header with id and name, then argument fragments).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workbench_core.protocol import ResponseFormat
from workbench_serving.api.errors import APIError
from workbench_serving.api.state import ServedModel
from workbench_serving.engines.base import EngineError
from workbench_serving.engines.constraints import ConstraintSpec

__all__ = [
    "FunctionDef",
    "NamedToolChoice",
    "ParsedCall",
    "ToolCallIn",
    "ToolCallStreamer",
    "ToolDef",
    "ToolPlan",
    "check_constraint",
    "parse_tool_calls",
    "plan_tools",
    "response_format_spec",
]

_COMPACT = {"x-guidance": {"whitespace_flexible": False}}


# ---------------------------------------------------------------- response_format


def response_format_spec(
    rf: ResponseFormat | None, param: str = "response_format"
) -> ConstraintSpec | None:
    """The constraint a ``response_format`` asks for (``None`` for ``text`` or absent)."""
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return ConstraintSpec("json_object", param=param)
    if rf.type == "json_schema":
        assert rf.json_schema is not None
        return ConstraintSpec(
            "json_schema",
            rf.json_schema.schema_,
            strict=bool(rf.json_schema.strict),
            param=f"{param}.json_schema.schema",
        )
    if rf.type == "regex":
        return ConstraintSpec("regex", rf.regex, param=f"{param}.regex")
    return ConstraintSpec("lark", rf.grammar, param=f"{param}.grammar")


async def check_constraint(served: ServedModel, spec: ConstraintSpec | None) -> None:
    """Compile ``spec`` for the model now (off the event loop), so errors are a 400 up front.

    Raises:
        APIError: 400 naming ``spec.param`` when the schema or grammar is invalid.
    """
    if spec is None:
        return
    grammars = getattr(served.engine, "grammars", None)
    if grammars is None:
        raise APIError(
            400,
            f"{spec.param}: model {served.name!r} cannot constrain its output",
            param=spec.param,
        )
    try:
        await asyncio.to_thread(grammars.validate, spec)
    except EngineError as exc:
        raise APIError(400, f"{exc.param}: {exc.message}", param=exc.param) from exc


# ---------------------------------------------------------------- tools (wire types)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDef


class _Named(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: _Named


class _FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: str


class ToolCallIn(BaseModel):
    """A call in an assistant message of the history."""

    model_config = ConfigDict(extra="forbid")

    id: str
    type: Literal["function"] = "function"
    function: _FunctionCallIn


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


# ---------------------------------------------------------------- plan


@dataclass
class ToolPlan:
    """What a chat request's tools mean for decoding and for reading the reply."""

    mode: Literal["off", "none", "auto", "required", "named"]
    tools: list[ToolDef] = field(default_factory=list)
    parallel: bool = True
    tagged: bool = False  # the chat template wraps calls in <tool_call> ... </tool_call>
    native_template: bool = False  # the chat template renders tools itself
    spec: ConstraintSpec | None = None

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "named")

    @property
    def parses(self) -> bool:
        return self.mode in ("auto", "required", "named")

    def by_name(self) -> dict[str, ToolDef]:
        return {t.function.name: t for t in self.tools}


def _parameters(tool: ToolDef) -> dict[str, Any]:
    return tool.function.parameters or {"type": "object", "properties": {}}


def _call_schema(tool: ToolDef) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": tool.function.name},
            "arguments": _parameters(tool),
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _calls_grammar(
    tools: list[ToolDef], parallel: bool, tagged: bool, alternative: dict[str, Any] | None
) -> str:
    """A Lark grammar (llguidance dialect, ``%json``) for one or more calls of ``tools``."""
    schemas = [_call_schema(t) for t in tools]
    call = {**(schemas[0] if len(schemas) == 1 else {"anyOf": schemas}), **_COMPACT}
    lines = [f"call: %json {json.dumps(call)}"]
    if tagged:
        lines.append('block: "<tool_call>\\n" call "\\n</tool_call>"')
        calls = 'block ("\\n" block)*' if parallel else "block"
    else:
        calls = '"[" call ("," call)* "]"' if parallel else "call"
    if alternative is not None:
        lines.append(f"answer: %json {json.dumps({**alternative, **_COMPACT})}")
        lines.insert(0, f"start: {calls} | answer")
    else:
        lines.insert(0, f"start: {calls}")
    return "\n".join(lines) + "\n"


def _check_tool(i: int, tool: ToolDef) -> None:
    params = tool.function.parameters
    where = f"tools.{i}.function.parameters"
    if params is None:
        return
    if params.get("type", "object") != "object":
        raise APIError(
            400,
            f"{where}: function {tool.function.name!r} must take an object (type 'object')",
            param=where,
        )
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(params)
    except SchemaError as exc:
        raise APIError(
            400,
            f"{where}: invalid JSON Schema for function {tool.function.name!r}: {exc.message}",
            param=where,
        ) from exc


async def plan_tools(
    served: ServedModel,
    tools: list[ToolDef] | None,
    tool_choice: ToolChoice | None,
    parallel_tool_calls: bool | None,
    response_schema: dict[str, Any] | None = None,
) -> ToolPlan:
    """Validate a request's tools and decide how to decode and read the reply.

    Raises:
        APIError: 400 naming the bad tool or field (``tools.1.function.parameters``,
            ``tool_choice``...).
    """
    if not tools:
        if tool_choice is not None and tool_choice != "none":
            raise APIError(400, "tool_choice: given without any tools", param="tool_choice")
        if parallel_tool_calls is not None:
            raise APIError(
                400, "parallel_tool_calls: given without any tools", param="parallel_tool_calls"
            )
        return ToolPlan(mode="off")
    seen: dict[str, int] = {}
    for i, tool in enumerate(tools):
        name = tool.function.name
        if name in seen:
            raise APIError(
                400,
                f"tools.{i}.function.name: {name!r} is already the name of tools.{seen[name]}",
                param=f"tools.{i}.function.name",
            )
        seen[name] = i
        _check_tool(i, tool)
    template = _template(served)
    plan = ToolPlan(
        mode="auto",
        tools=list(tools),
        parallel=True if parallel_tool_calls is None else parallel_tool_calls,
        tagged="<tool_call>" in template,
        native_template="tools" in template,
    )
    # Each function's schema compiles on its own first, so an unsupported one is named.
    for i, tool in enumerate(tools):
        await check_constraint(
            served,
            ConstraintSpec(
                "json_schema",
                _parameters(tool),
                strict=bool(tool.function.strict),
                param=f"tools.{i}.function.parameters",
            ),
        )
    if tool_choice is None or tool_choice == "auto":
        plan.mode = "auto"
        if response_schema is not None:
            # Free choice between calling and answering, both grammar-bound.
            plan.spec = ConstraintSpec(
                "lark",
                _calls_grammar(plan.tools, plan.parallel, plan.tagged, response_schema),
                param="response_format",
                json_like=True,
            )
        return plan
    if tool_choice == "none":
        plan.mode = "none"
        return plan
    if isinstance(tool_choice, NamedToolChoice):
        name = tool_choice.function.name
        if name not in seen:
            raise APIError(
                400,
                f"tool_choice.function.name: no tool named {name!r} in tools",
                param="tool_choice.function.name",
            )
        plan.mode = "named"
        chosen = [tools[seen[name]]]
        parallel = False
    else:
        plan.mode = "required"
        chosen = plan.tools
        parallel = plan.parallel
    plan.spec = ConstraintSpec(
        "lark", _calls_grammar(chosen, parallel, plan.tagged, None), param="tools", json_like=True
    )
    await check_constraint(served, plan.spec)
    return plan


def _template(served: ServedModel) -> str:
    tok = getattr(served.engine, "tokenizer", None)
    template = getattr(tok, "chat_template", None)
    return template if isinstance(template, str) else ""


# ---------------------------------------------------------------- prompt rendering


def fallback_tools_prompt(plan: ToolPlan) -> str:
    """The system text that describes the tools to a model whose template cannot."""
    functions = [
        {
            "name": t.function.name,
            "description": t.function.description or "",
            "parameters": _parameters(t),
        }
        for t in plan.tools
    ]
    shape = '{"name": <function name>, "arguments": <arguments object>}'
    if plan.parallel:
        how = f"reply with only a JSON array of calls, each {shape}"
    else:
        how = f"reply with only one JSON object {shape}"
    return (
        "You can call these functions (each with a JSON Schema of its arguments):\n"
        f"{json.dumps(functions, ensure_ascii=False)}\n"
        f"To call functions, {how}. Otherwise answer normally."
    )


def call_text(calls: list[tuple[str, Any]], plan: ToolPlan) -> str:
    """How an assistant turn with ``calls`` reads in the reply format the model is asked for."""
    objs = [{"name": n, "arguments": a} for n, a in calls]
    if plan.tagged:
        return "\n".join(
            f"<tool_call>\n{json.dumps(o, ensure_ascii=False)}\n</tool_call>" for o in objs
        )
    if plan.parallel or len(objs) != 1:
        return json.dumps(objs, ensure_ascii=False)
    return json.dumps(objs[0], ensure_ascii=False)


def loads_or_text(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


# ---------------------------------------------------------------- reading the reply


@dataclass
class ParsedCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _valid(name: str, args: Any, plan: ToolPlan) -> bool:
    tool = plan.by_name().get(name)
    if tool is None or not isinstance(args, dict):
        return False
    from jsonschema import Draft202012Validator

    return not any(True for _ in Draft202012Validator(_parameters(tool)).iter_errors(args))


def parse_tool_calls(text: str, plan: ToolPlan) -> list[ParsedCall] | None:
    """The calls a reply makes, or ``None`` when it is not (entirely) valid calls of ``plan``.

    Accepts the tagged form, a call object, an array of them, or ``{"tool_calls": [...]}``;
    ``parameters`` is read as ``arguments``. Every call must name a declared tool and match its
    schema, otherwise the reply is content.
    """
    stripped = text.strip()
    if not stripped:
        return None
    objs: list[Any]
    blocks = _TAGGED.findall(stripped)
    try:
        if blocks:
            if _TAGGED.sub("", stripped).strip():
                return None
            objs = [json.loads(b) for b in blocks]
        else:
            if stripped[0] not in "[{":
                return None
            value = json.loads(stripped)
            if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
                value = value["tool_calls"]
            objs = value if isinstance(value, list) else [value]
    except ValueError:
        return None
    if not objs:
        return None
    calls: list[ParsedCall] = []
    for obj in objs:
        if not isinstance(obj, dict):
            return None
        inner = obj.get("function")
        fn: dict[str, Any] = inner if isinstance(inner, dict) else obj
        name = fn.get("name")
        args = fn.get("arguments", fn.get("parameters"))
        if isinstance(args, str):
            args = loads_or_text(args)
        if not isinstance(name, str) or not _valid(name, args, plan):
            return None
        calls.append(ParsedCall(new_call_id(), name, json.dumps(args, ensure_ascii=False)))
    if not plan.parallel and len(calls) > 1:
        return None
    return calls


_CALL_HEAD = re.compile(r'\{\s*"name"\s*:\s*"([^"\\]*)"\s*,\s*"arguments"\s*:\s*')


@dataclass
class _Open:
    index: int
    start: int  # where the arguments' text starts
    emitted: int  # how far the arguments were streamed
    depth: int = 0
    in_string: bool = False
    escape: bool = False
    scanned: int = 0  # absolute position scanned so far


class ToolCallStreamer:
    """Turns the growing text of a grammar-forced reply into OpenAI ``tool_calls`` deltas.

    The grammar fixes the key order (``name`` then ``arguments``) and the compact form, so a
    call's header is recognisable as soon as its name is complete, and its arguments are the
    JSON value that follows, delimited by bracket depth.
    """

    def __init__(self) -> None:
        self.calls: list[ParsedCall] = []
        self._pos = 0
        self._open: _Open | None = None

    def feed(self, text: str) -> list[dict[str, Any]]:
        """The ``tool_calls`` delta entries that ``text`` (the whole reply so far) adds."""
        out: list[dict[str, Any]] = []
        while True:
            if self._open is None:
                m = _CALL_HEAD.search(text, self._pos)
                if m is None:
                    return out
                call = ParsedCall(new_call_id(), m.group(1), "")
                self.calls.append(call)
                index = len(self.calls) - 1
                self._open = _Open(index=index, start=m.end(), emitted=m.end(), scanned=m.end())
                out.append(
                    {
                        "index": index,
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                )
            op = self._open
            end = self._scan(op, text)
            upto = end if end is not None else len(text)
            if upto > op.emitted:
                piece = text[op.emitted : upto]
                op.emitted = upto
                self.calls[op.index].arguments += piece
                out.append({"index": op.index, "function": {"arguments": piece}})
            if end is None:
                return out
            self._open = None
            self._pos = end

    @staticmethod
    def _scan(op: _Open, text: str) -> int | None:
        """Absolute end of the arguments value, or ``None`` while it is still open."""
        i = op.scanned
        while i < len(text):
            ch = text[i]
            i += 1
            if op.in_string:
                if op.escape:
                    op.escape = False
                elif ch == "\\":
                    op.escape = True
                elif ch == '"':
                    op.in_string = False
                    if op.depth == 0:
                        op.scanned = i
                        return i
            elif ch == '"':
                op.in_string = True
            elif ch in "{[":
                op.depth += 1
            elif ch in "}]":
                op.depth -= 1
                if op.depth <= 0:
                    op.scanned = i
                    return i
        op.scanned = i
        return None

    def complete(self, plan: ToolPlan) -> list[ParsedCall] | None:
        """The calls, if every one is closed and valid for ``plan``."""
        if self._open is not None or not self.calls:
            return None
        for call in self.calls:
            if not _valid(call.name, loads_or_text(call.arguments), plan):
                return None
        return self.calls

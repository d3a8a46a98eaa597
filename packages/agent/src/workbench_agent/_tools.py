"""Tools: the ``@tool`` decorator, ``ToolSpec``, ``ToolRegistry`` and ``ToolRunner``.

Why a runner between the model and the function: a model's arguments are untrusted input, tools
hang, flake and must stop when a run is cancelled. The runner validates arguments against the
schema the model was shown (a clear error goes back to the model instead of a traceback), runs
sync tools in worker threads so the event loop keeps streaming, applies a timeout and core's
retry policy, and reports every start, end, error and cancellation as an event with a duration.

Errors::

    Exception
     ├── ToolError                  a tool call that did not produce a result
     │    ├── ToolNotFound          no tool by that name
     │    ├── ToolArgumentsInvalid  arguments failed schema validation (not retried)
     │    └── ToolTimeout           one attempt ran past the tool's timeout (retried)
     └── RetryableToolError         raise from a tool to ask for a retry
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import json
import re
import sys
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from workbench_core.cancel import Cancelled, CancelToken
from workbench_core.retry import RetryDecision, RetryPolicy, retry_async

from ._cancel import cancel_scope
from ._messages import ToolCall, ToolSchema

__all__ = [
    "Emit",
    "RetryableToolError",
    "ToolArgumentsInvalid",
    "ToolError",
    "ToolNotFound",
    "ToolRegistry",
    "ToolResult",
    "ToolRunner",
    "ToolSpec",
    "ToolTimeout",
    "tool",
]

Emit = Callable[[str, dict[str, Any]], object]
"""Publishes one event: ``emit(type, data)``."""


class ToolError(Exception):
    """A tool call that produced no result."""


class ToolNotFound(ToolError):
    """The model asked for a tool that is not registered."""


class ToolArgumentsInvalid(ToolError):
    """The arguments do not match the tool's schema; the message names each bad field."""


class ToolTimeout(ToolError):
    """One attempt ran longer than the tool's timeout."""


class RetryableToolError(Exception):
    """Raise from a tool for a transient failure the runner should retry."""


_DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (
    RetryableToolError,
    ToolTimeout,
    ConnectionError,
)


@dataclass
class ToolSpec:
    """A callable the model may use, described well enough to validate and govern it.

    Attributes:
        name: the name the model calls it by.
        description: what it is for (the model reads this).
        fn: the function, sync or async.
        args_model: pydantic model of its arguments; ``parameters`` is its JSON schema.
        timeout: seconds per attempt, None for no limit.
        retry: core's ``RetryPolicy``; None runs once.
        retry_on: exception types that count as transient.
        token_param: name of a ``CancelToken`` parameter the runner fills in, if any.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    timeout: float | None = 30.0
    retry: RetryPolicy | None = None
    retry_on: tuple[type[BaseException], ...] = _DEFAULT_RETRY_ON
    token_param: str | None = None
    is_async: bool = field(init=False)
    parameters: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.fn)
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        self.parameters = schema

    def schema(self) -> ToolSchema:
        """The description handed to an LLM."""
        return ToolSchema(name=self.name, description=self.description, parameters=self.parameters)

    def validate_args(self, args: Any) -> dict[str, Any]:
        """Validate ``args`` against the schema.

        Returns:
            The validated keyword arguments (defaults filled in, types coerced).

        Raises:
            ToolArgumentsInvalid: naming every field at fault.
        """
        if not isinstance(args, dict):
            raise ToolArgumentsInvalid(
                f"arguments for tool {self.name!r} must be a JSON object, got {type(args).__name__}"
            )
        try:
            model = self.args_model.model_validate(args)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(arguments)"
                problems.append(f"{where}: {err['msg']}")
            raise ToolArgumentsInvalid(
                f"invalid arguments for tool {self.name!r}: " + "; ".join(problems)
            ) from None
        return {name: getattr(model, name) for name in type(model).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no governance)."""
        return self.fn(*args, **kwargs)


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (summary, {arg: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary_lines: list[str] = []
    args: dict[str, str] = {}
    i = 0
    while i < len(lines) and not _SECTION.match(lines[i]):
        summary_lines.append(lines[i])
        i += 1
    current: str | None = None
    in_args = False
    arg_indent: int | None = None
    for line in lines[i:]:
        if _ARGS_HEADER.match(line):
            in_args, current, arg_indent = True, None, None
            continue
        if _SECTION.match(line) and not line.startswith(" "):
            in_args = False
            continue
        if not in_args or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        m = _ARG_LINE.match(line)
        if m and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = m.group(1).lstrip("*")
            args[current] = m.group(3).strip()
        elif current is not None:
            args[current] = (args[current] + " " + line.strip()).strip()
    summary = " ".join(s.strip() for s in summary_lines if s.strip())
    return summary, args


def _build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    retry: RetryPolicy | None,
    retry_on: tuple[type[BaseException], ...],
    localns: dict[str, Any] | None = None,
) -> ToolSpec:
    sig = inspect.signature(fn)
    # The defining scope's locals resolve string annotations of tools defined inside functions.
    hints = typing.get_type_hints(fn, localns=localns, include_extras=True)
    summary, arg_docs = _parse_docstring(fn.__doc__)
    fields: dict[str, Any] = {}
    token_param: str | None = None
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__}: *args/**kwargs cannot be described to a model")
        annotation = hints.get(pname, Any)
        if annotation is CancelToken:
            token_param = pname
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, Field(default, description=arg_docs.get(pname)))
    tool_name = name or fn.__name__
    model = create_model(  # type: ignore[call-overload]
        f"{tool_name}_args",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return ToolSpec(
        name=tool_name,
        description=description or summary or tool_name,
        fn=fn,
        args_model=model,
        timeout=timeout,
        retry=retry,
        retry_on=retry_on,
        token_param=token_param,
    )


@typing.overload
def tool(fn: Callable[..., Any], /) -> ToolSpec: ...
@typing.overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = 30.0,
    retry: RetryPolicy | None = None,
    retry_on: tuple[type[BaseException], ...] = _DEFAULT_RETRY_ON,
) -> Callable[[Callable[..., Any]], ToolSpec]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = 30.0,
    retry: RetryPolicy | None = None,
    retry_on: tuple[type[BaseException], ...] = _DEFAULT_RETRY_ON,
) -> ToolSpec | Callable[[Callable[..., Any]], ToolSpec]:
    """Turn a typed, documented function into a ``ToolSpec``.

    The JSON schema comes from the type hints (through pydantic), the description from the
    docstring's summary and each argument's description from its ``Args:`` section. A parameter
    annotated ``CancelToken`` is filled in by the runner and hidden from the model, so a
    long-running sync tool can call ``token.checkpoint()``.

    Usable bare (``@tool``) or with options (``@tool(timeout=5, retry=RetryPolicy(...))``).
    """

    def wrap(f: Callable[..., Any], localns: dict[str, Any] | None = None) -> ToolSpec:
        if localns is None:
            localns = dict(sys._getframe(1).f_locals)
        return _build_spec(
            f,
            name=name,
            description=description,
            timeout=timeout,
            retry=retry,
            retry_on=retry_on,
            localns=localns,
        )

    if fn is not None:
        return wrap(fn, dict(sys._getframe(1).f_locals))
    return wrap


class ToolRegistry:
    """Tools by name; what the runner may call and what the model is told about."""

    def __init__(self, tools: Iterable[ToolSpec | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, ToolSpec] = {}
        for t in tools:
            self.register(t)

    def register(self, spec: ToolSpec | Callable[..., Any], *, replace: bool = False) -> ToolSpec:
        """Add a tool (a ``ToolSpec`` or a plain typed function).

        Raises:
            ValueError: the name is taken and ``replace`` is False.
        """
        if not isinstance(spec, ToolSpec):
            spec = tool(spec)
        if spec.name in self._tools and not replace:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._tools[spec.name] = spec
        return spec

    def get(self, name: str) -> ToolSpec:
        """The tool called ``name``.

        Raises:
            ToolNotFound: naming the tools that do exist.
        """
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none"
            raise ToolNotFound(f"no tool named {name!r}; available: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def list(self) -> list[ToolSpec]:
        """All tools, sorted by name."""
        return [self._tools[k] for k in sorted(self._tools)]

    def schemas(self) -> builtins.list[ToolSchema]:
        """The schemas to hand to an LLM."""
        return [t.schema() for t in self.list()]


@dataclass
class ToolResult:
    """The outcome of one tool call, ready to become a tool message."""

    call_id: str
    name: str
    ok: bool
    output: Any = None
    error: str | None = None
    duration_s: float = 0.0
    attempts: int = 0

    def content(self) -> str:
        """The observation text the model sees."""
        if not self.ok:
            return json.dumps({"error": self.error}, ensure_ascii=False)
        if isinstance(self.output, str):
            return self.output
        return json.dumps(self.output, ensure_ascii=False, default=str)

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "ok": self.ok,
            "output": _jsonable(self.output),
            "error": self.error,
            "duration_ms": round(self.duration_s * 1000, 3),
            "attempts": self.attempts,
        }


def _jsonable(value: Any) -> Any:
    if value is None or type(value) in (str, int, float, bool):
        return value
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def _no_emit(_type: str, _data: dict[str, Any]) -> None:
    return None


class ToolRunner:
    """Runs tool calls from a registry with validation, timeout, retry, cancellation and events.

    Args:
        registry: where tools are looked up.
        emit: receives ``tool_start``, ``tool_end``, ``tool_error``, ``tool_cancelled``.
        sleep: the retry backoff's sleep (tests may speed it up).
    """

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        emit: Emit | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.registry = registry
        self.emit: Emit = emit or _no_emit
        self._sleep = sleep

    async def run(self, call: ToolCall, token: CancelToken | None = None) -> ToolResult:
        """Run one call. Tool failures become a failed ``ToolResult`` for the model to read.

        Raises:
            Cancelled: the token was cancelled before or while the tool ran (after emitting
                ``tool_cancelled``). Cancellation is not a tool failure: the run stops.
        """
        emit = self.emit
        start = time.perf_counter()
        attempts = 0
        emit("tool_start", {"call_id": call.id, "name": call.name, "args": call.args})

        async def attempt(spec: ToolSpec, kwargs: dict[str, Any]) -> Any:
            nonlocal attempts
            attempts += 1
            if token is not None:
                token.checkpoint()
            return await self._attempt(spec, kwargs, token)

        try:
            async with cancel_scope(token):
                spec = self.registry.get(call.name)
                kwargs = spec.validate_args(call.args)
                if spec.token_param is not None:
                    kwargs[spec.token_param] = token if token is not None else CancelToken()
                if spec.retry is None:
                    output = await attempt(spec, kwargs)
                else:
                    retry_on = spec.retry_on

                    def classify(exc: BaseException | None, _result: Any) -> RetryDecision:
                        return RetryDecision(retry=exc is not None and isinstance(exc, retry_on))

                    output = await retry_async(
                        lambda: attempt(spec, kwargs),
                        spec.retry,
                        classify=classify,
                        sleep=self._sleep,
                    )
        except (Cancelled, asyncio.CancelledError) as exc:
            # Re-raised unchanged: an enclosing cancel scope (the run's) turns a CancelledError
            # into Cancelled and balances the task's cancel count.
            if isinstance(exc, asyncio.CancelledError) and (token is None or not token.cancelled):
                raise
            reason = exc.reason if isinstance(exc, Cancelled) else (token.reason if token else "")
            emit(
                "tool_cancelled",
                {
                    "call_id": call.id,
                    "name": call.name,
                    "reason": reason,
                    "duration_ms": _ms(start),
                    "attempts": attempts,
                },
            )
            raise
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, ToolError):
                message = f"{type(exc).__name__}: {message}"
            emit(
                "tool_error",
                {
                    "call_id": call.id,
                    "name": call.name,
                    "error": message,
                    "duration_ms": _ms(start),
                    "attempts": attempts,
                },
            )
            return ToolResult(
                call.id, call.name, False, None, message, time.perf_counter() - start, attempts
            )
        result = ToolResult(
            call.id, call.name, True, output, None, time.perf_counter() - start, attempts
        )
        emit(
            "tool_end",
            {
                "call_id": call.id,
                "name": call.name,
                "output": _jsonable(output),
                "duration_ms": _ms(start),
                "attempts": attempts,
            },
        )
        return result

    async def _attempt(
        self, spec: ToolSpec, kwargs: dict[str, Any], token: CancelToken | None
    ) -> Any:
        if spec.is_async:
            if spec.timeout is None:
                return await spec.fn(**kwargs)
            return await _with_timeout(spec, spec.fn(**kwargs), token)
        # A worker thread cannot be killed: on timeout or cancel we stop waiting for it, and a
        # tool that declares a CancelToken parameter can notice and stop itself.
        fut = asyncio.get_running_loop().run_in_executor(None, _call_kwargs, spec.fn, kwargs)
        try:
            return await asyncio.wait_for(fut, spec.timeout)
        except TimeoutError:
            raise ToolTimeout(f"tool {spec.name!r} timed out after {spec.timeout}s") from None

    async def run_many(
        self, calls: Sequence[ToolCall], token: CancelToken | None = None
    ) -> list[ToolResult]:
        """Run several calls concurrently; results come back in call order.

        Raises:
            Cancelled: if the token is cancelled; every still-running call is stopped first.
        """
        if len(calls) == 1:
            return [await self.run(calls[0], token)]
        tasks = [asyncio.ensure_future(self.run(c, token)) for c in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


class _Deadline:
    """Cancels a task when its time is up; cheaper than ``asyncio.timeout`` per tool call."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        if not self.task.done():
            self.fired = True
            self.task.cancel("tool timeout")


async def _with_timeout(spec: ToolSpec, coro: Awaitable[Any], token: CancelToken | None) -> Any:
    task = asyncio.current_task()
    assert task is not None and spec.timeout is not None
    deadline = _Deadline(task)
    handle = task.get_loop().call_later(spec.timeout, deadline)
    try:
        return await coro
    except asyncio.CancelledError:
        # Our own timer (and not a cancelled run) interrupted the tool: that is a timeout.
        if deadline.fired and not (token is not None and token.cancelled):
            task.uncancel()
            raise ToolTimeout(f"tool {spec.name!r} timed out after {spec.timeout}s") from None
        raise
    finally:
        handle.cancel()


def _call_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    return fn(**kwargs)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)

"""workbench-agent: an LLM abstraction, governed tools, a ReAct loop and live events.

``LLMClient`` is the one interface the loop talks to (adapters: ``GeminiLLM``, ``ServedLLM`` for
the workbench's own model, ``OpenAICompatLLM`` for any OpenAI-compatible endpoint, ``ScriptedLLM``
for tests); ``@tool`` turns a typed function into a
``ToolSpec`` that a ``ToolRunner`` runs with validation, timeout, retry, cancellation and events;
``run_agent`` is the ReAct loop; ``AgentRuntime`` holds sessions and runs; ``create_app`` serves
it over HTTP with SSE.

Names load on first use so ``import workbench_agent`` stays light (no torch, transformers,
diffusers, and no FastAPI or google-genai until they are needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # messages and the LLM protocol
    "Delta": "._messages",
    "LLMClient": "._messages",
    "LLMResponse": "._messages",
    "Message": "._messages",
    "ToolCall": "._messages",
    "ToolSchema": "._messages",
    "Usage": "._messages",
    "collect_stream": "._messages",
    # adapters
    "GeminiLLM": "._gemini",
    "ScriptedLLM": "._scripted",
    "ScriptExhausted": "._scripted",
    "ServedLLM": "._served",
    "OpenAICompatLLM": "._openai_compat",
    "OpenAICompatError": "._openai_compat",
    # tools
    "RetryableToolError": "._tools",
    "ToolArgumentsInvalid": "._tools",
    "ToolError": "._tools",
    "ToolNotFound": "._tools",
    "ToolRegistry": "._tools",
    "ToolResult": "._tools",
    "ToolRunner": "._tools",
    "ToolSpec": "._tools",
    "ToolTimeout": "._tools",
    "tool": "._tools",
    "builtin_registry": "._builtin",
    "WorkbenchTools": "._builtin",
    "TrackerRunObserver": "._tracking",
    "tracker_observer": "._tracking",
    "RunObserver": "._runtime",
    # loop and runtime
    "ActionParseError": "._loop",
    "RunResult": "._loop",
    "parse_action": "._loop",
    "run_agent": "._loop",
    "AgentRuntime": "._runtime",
    "AgentSettings": "._runtime",
    "RunConflict": "._runtime",
    "RunHandle": "._runtime",
    "Session": "._runtime",
    "SessionNotFound": "._runtime",
    "TaskManager": "._runtime",
    "cancel_scope": "._cancel",
    # HTTP
    "create_app": ".app",
}

__all__ = [
    "ActionParseError",
    "AgentRuntime",
    "AgentSettings",
    "Delta",
    "GeminiLLM",
    "LLMClient",
    "LLMResponse",
    "Message",
    "OpenAICompatError",
    "OpenAICompatLLM",
    "RetryableToolError",
    "RunConflict",
    "RunHandle",
    "RunObserver",
    "RunResult",
    "ScriptExhausted",
    "ScriptedLLM",
    "ServedLLM",
    "Session",
    "SessionNotFound",
    "TaskManager",
    "ToolArgumentsInvalid",
    "ToolCall",
    "ToolError",
    "ToolNotFound",
    "ToolRegistry",
    "ToolResult",
    "ToolRunner",
    "ToolSchema",
    "ToolSpec",
    "ToolTimeout",
    "TrackerRunObserver",
    "Usage",
    "WorkbenchTools",
    "__version__",
    "builtin_registry",
    "cancel_scope",
    "collect_stream",
    "create_app",
    "parse_action",
    "run_agent",
    "tool",
    "tracker_observer",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from ._builtin import WorkbenchTools, builtin_registry
    from ._cancel import cancel_scope
    from ._gemini import GeminiLLM
    from ._loop import ActionParseError, RunResult, parse_action, run_agent
    from ._messages import (
        Delta,
        LLMClient,
        LLMResponse,
        Message,
        ToolCall,
        ToolSchema,
        Usage,
        collect_stream,
    )
    from ._openai_compat import OpenAICompatError, OpenAICompatLLM
    from ._runtime import (
        AgentRuntime,
        AgentSettings,
        RunConflict,
        RunHandle,
        RunObserver,
        Session,
        SessionNotFound,
        TaskManager,
    )
    from ._scripted import ScriptedLLM, ScriptExhausted
    from ._served import ServedLLM
    from ._tools import (
        RetryableToolError,
        ToolArgumentsInvalid,
        ToolError,
        ToolNotFound,
        ToolRegistry,
        ToolResult,
        ToolRunner,
        ToolSpec,
        ToolTimeout,
        tool,
    )
    from ._tracking import TrackerRunObserver, tracker_observer
    from .app import create_app

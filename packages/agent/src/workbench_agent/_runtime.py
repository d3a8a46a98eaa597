"""Sessions, runs and the ``TaskManager`` that owns each run's task and ``CancelToken``.

Why a runtime object: the HTTP app, the CLI and tests all need the same things (a session's
history, one active run per session, cancel with a reason, events on the session's topic), and
the app stays a thin layer of routes over it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_settings import SettingsConfigDict

from workbench_core.cancel import CancelToken
from workbench_core.config import WorkbenchSettings
from workbench_core.events import EventBus

from ._loop import RunResult, run_agent
from ._messages import LLMClient, Message
from ._tools import ToolRegistry, ToolResult, ToolRunner

__all__ = [
    "AgentRuntime",
    "AgentSettings",
    "RunConflict",
    "RunHandle",
    "Session",
    "SessionNotFound",
    "TaskManager",
]


class AgentSettings(WorkbenchSettings):
    """Agent limits and defaults (``WORKBENCH_AGENT_*``).

    Attributes:
        max_steps: default model turns per run.
        max_steps_limit: the most a request may ask for.
        max_sessions: sessions kept in memory; the least recently used idle one is dropped.
        max_prompt_chars: longest accepted prompt.
        heartbeat: seconds between SSE pings on an idle event stream.
        model: served model name for the default LLM.
    """

    model_config = SettingsConfigDict(env_prefix="WORKBENCH_AGENT_", extra="ignore")

    max_steps: int = 8
    max_steps_limit: int = 64
    max_sessions: int = 1000
    max_prompt_chars: int = 32_000
    heartbeat: float = 15.0
    model: str | None = None


class SessionNotFound(KeyError):
    """No session with that id."""


class RunConflict(RuntimeError):
    """The session already has a run in progress."""


@dataclass
class RunHandle:
    """One run: its task, its token and, once over, its result."""

    id: str
    session_id: str
    prompt: str
    token: CancelToken
    task: asyncio.Task[RunResult] | None = None
    result: RunResult | None = None
    started_at: float = field(default_factory=time.time)

    @property
    def status(self) -> str:
        if self.result is not None:
            return self.result.status
        if self.token.cancelled:
            return "cancelling"
        return "running"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "session_id": self.session_id,
            "status": self.status,
            "prompt": self.prompt,
            "started_at": self.started_at,
        }
        if self.result is not None:
            out["result"] = self.result.to_dict()
        return out


@dataclass
class Session:
    """A conversation: its history, its event topic and its runs."""

    id: str
    topic: str
    history: list[Message] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    runs: dict[str, RunHandle] = field(default_factory=dict)
    active: RunHandle | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "events": "events",
            "active_run": self.active.id if self.active else None,
            "runs": [r.to_dict() for r in self.runs.values()],
            "history": [m.model_dump(exclude_defaults=True) for m in self.history],
        }


class TaskManager:
    """Starts coroutines as tasks, each with a ``CancelToken``; status and cancel by run id."""

    def __init__(self, max_finished: int = 1000) -> None:
        self._runs: OrderedDict[str, RunHandle] = OrderedDict()
        self._max_finished = max_finished

    def start(
        self,
        session_id: str,
        prompt: str,
        work: Callable[[RunHandle], Awaitable[RunResult]],
    ) -> RunHandle:
        """Start ``work(handle)`` as a task; the handle's token cancels it."""
        handle = RunHandle(
            id="run_" + uuid.uuid4().hex[:16],
            session_id=session_id,
            prompt=prompt,
            token=CancelToken(),
        )

        async def runner() -> RunResult:
            result = await work(handle)
            handle.result = result
            return result

        handle.task = asyncio.create_task(runner(), name=f"agent-{handle.id}")
        self._runs[handle.id] = handle
        self._trim()
        return handle

    def _trim(self) -> None:
        while len(self._runs) > self._max_finished:
            oldest = next(iter(self._runs.values()))
            if oldest.result is None:
                break
            self._runs.popitem(last=False)

    def status(self, run_id: str) -> RunHandle:
        """The run's handle.

        Raises:
            KeyError: unknown run id.
        """
        return self._runs[run_id]

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel a run with a reason; False if it already finished or was cancelled."""
        handle = self._runs[run_id]
        if handle.result is not None:
            return False
        return handle.token.cancel(reason)

    def active(self) -> list[RunHandle]:
        return [h for h in self._runs.values() if h.result is None]

    async def shutdown(self, reason: str = "server shutting down") -> None:
        """Cancel every active run and wait for them to end."""
        active = self.active()
        for h in active:
            h.token.cancel(reason)
        tasks = [h.task for h in active if h.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


StepHook = Callable[[RunHandle], "RunObserver | None"]


class RunObserver:
    """Receives a run's events as they happen (the tracker logger implements it)."""

    def on_event(self, type: str, data: dict[str, Any]) -> None:  # pragma: no cover - interface
        """Called for every event of the run."""

    def close(self, result: RunResult) -> None:  # pragma: no cover - interface
        """Called once when the run is over."""


class AgentRuntime:
    """Sessions, runs, tools and the event bus, wired together.

    Args:
        llm: the model every run uses.
        registry: the tools; empty by default.
        bus: where events go (topic ``agent/<session id>``); a new one by default.
        settings: limits and defaults.
        system_prompt: the first message of every new session, unless the session gives its own.
        observer: a factory called per run returning a ``RunObserver`` (tracker logging), or None.
    """

    def __init__(
        self,
        llm: LLMClient,
        registry: ToolRegistry | None = None,
        *,
        bus: EventBus | None = None,
        settings: AgentSettings | None = None,
        system_prompt: str | None = None,
        observer: StepHook | None = None,
    ) -> None:
        self.llm = llm
        self.registry = registry if registry is not None else ToolRegistry()
        self.bus = bus if bus is not None else EventBus()
        self.settings = settings or AgentSettings()
        self.system_prompt = system_prompt
        self.observer = observer
        self.tasks = TaskManager()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    # Sessions -------------------------------------------------------------------------------

    def create_session(self, system: str | None = None) -> Session:
        """A new empty session (its system prompt first, if any)."""
        sid = "ses_" + uuid.uuid4().hex[:16]
        session = Session(id=sid, topic=f"agent/{sid}")
        prompt = system if system is not None else self.system_prompt
        if prompt:
            session.history.append(Message.system(prompt))
        self._sessions[sid] = session
        self._evict()
        return session

    def _evict(self) -> None:
        excess = len(self._sessions) - self.settings.max_sessions
        for sid in list(self._sessions):
            if excess <= 0:
                break
            if self._sessions[sid].active is None:
                del self._sessions[sid]
                self.bus.close_topic(f"agent/{sid}")
                excess -= 1

    def get_session(self, session_id: str) -> Session:
        """The session.

        Raises:
            SessionNotFound: unknown id.
        """
        try:
            session = self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None
        self._sessions.move_to_end(session_id)
        return session

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def emitter(
        self, session: Session, run_id: str | None = None
    ) -> Callable[[str, dict[str, Any]], None]:
        """An ``emit(type, data)`` publishing to the session's topic, tagged with the run id."""
        bus, topic = self.bus, session.topic

        def emit(type: str, data: dict[str, Any]) -> None:
            if run_id is not None:
                data = {"run_id": run_id, **data}
            bus.publish(topic, type, data)

        return emit

    # Runs -----------------------------------------------------------------------------------

    def start_run(self, session_id: str, prompt: str, *, max_steps: int | None = None) -> RunHandle:
        """Append the prompt to the session and start a run on it.

        Raises:
            SessionNotFound: unknown session.
            RunConflict: the session already has an active run.
        """
        session = self.get_session(session_id)
        if session.active is not None:
            raise RunConflict(f"session {session_id} already has run {session.active.id} running")
        steps = max_steps or self.settings.max_steps

        async def work(handle: RunHandle) -> RunResult:
            emit = self.emitter(session, handle.id)
            observer: RunObserver | None = None
            if self.observer is not None:
                # Opening a tracker run writes to its store: keep that off the event loop.
                observer = await asyncio.to_thread(self.observer, handle)
            if observer is not None:
                inner = emit

                def emit(type: str, data: dict[str, Any]) -> None:
                    inner(type, data)
                    try:
                        observer.on_event(type, data)
                    except Exception:  # logging must never break a run
                        pass

            try:
                result = await run_agent(
                    self.llm,
                    session.history,
                    ToolRunner(self.registry, emit=emit),
                    emit=emit,
                    token=handle.token,
                    max_steps=steps,
                )
            finally:
                session.active = None
            if observer is not None:
                try:
                    await asyncio.to_thread(observer.close, result)
                except Exception:
                    pass
            return result

        session.history.append(Message.user(prompt))
        handle = self.tasks.start(session.id, prompt, work)
        session.active = handle
        session.runs[handle.id] = handle
        return handle

    def cancel(self, session_id: str, reason: str = "cancelled by user") -> RunHandle | None:
        """Cancel the session's active run; returns it, or None when nothing was running."""
        session = self.get_session(session_id)
        handle = session.active
        if handle is None:
            return None
        self.tasks.cancel(handle.id, reason)
        return handle

    async def call_tool(self, session_id: str, name: str, args: dict[str, Any]) -> ToolResult:
        """Run one tool directly in a session (events on its topic), outside any model run."""
        session = self.get_session(session_id)
        from ._messages import ToolCall

        runner = ToolRunner(self.registry, emit=self.emitter(session))
        return await runner.run(ToolCall(name=name, args=args), CancelToken())

    async def aclose(self) -> None:
        """Cancel every active run and wait for it, then close the LLM (server shutdown)."""
        await self.tasks.shutdown()
        aclose = getattr(self.llm, "aclose", None)
        if aclose is not None:
            await aclose()

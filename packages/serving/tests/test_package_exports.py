"""The package's public surface: every exported name resolves, and ``__all__`` lists them."""

from __future__ import annotations

import workbench_core.protocol as protocol
import workbench_serving


def test_every_exported_name_resolves() -> None:
    for name in workbench_serving.__all__:
        assert getattr(workbench_serving, name) is not None, name


def test_protocol_all_lists_every_public_wire_type() -> None:
    from pydantic import BaseModel

    public = {
        n
        for n, v in vars(protocol).items()
        if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == protocol.__name__
    }
    assert public <= set(protocol.__all__)

"""HTTP layer: native API, OpenAI-compatible API, WebSocket, errors, middleware."""

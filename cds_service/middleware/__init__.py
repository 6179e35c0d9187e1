"""ASGI middleware of the service, one concern per module (pure ASGI: no per-request task)."""

"""Server-rendered pages: the protocol, a proposed schedule and (when enabled) a card preview."""

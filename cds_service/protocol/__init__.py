"""The protocol: versioned tables of codes, thresholds, rules and regimens that the code reads."""

from cds_service.protocol.loader import (
    Protocol,
    ProtocolError,
    UnknownProfileError,
    default_protocol,
    load_protocol,
)

__all__ = ["Protocol", "ProtocolError", "UnknownProfileError", "default_protocol", "load_protocol"]

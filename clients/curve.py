"""A CurveZMQ client's keys (docs/protocol.md, "CurveZMQ"): ZeroMQ's own CURVE through
pyzmq, never a cipher of our own. Key files are those `zmq.auth.create_certificates`
writes (`python run.py keys NAME`): NAME.key (public) and NAME.key_secret (the pair),
loaded by matcher/curve.py's loader, the one the matchers use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.utils.z85

from matcher.curve import load_pair, load_public


@dataclass(frozen=True)
class CurveKeys:
    """A CURVE client's keys (Z85): the matcher's public key, ours, and our secret."""

    server_public: bytes
    public: bytes
    secret: bytes

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make `sock` a CURVE client of the matcher (before it connects)."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def client_keys(server_public: str | Path, own_secret: str | Path) -> CurveKeys:
    """A client's CurveKeys: `own_secret` is its .key_secret file; `server_public` the
    matcher's public key, as a file or as its 40 Z85 characters (GET / shows them)."""
    public, secret = load_pair(own_secret)
    text = str(server_public)
    if len(text) == 40 and not Path(text).exists():
        try:
            if len(zmq.utils.z85.decode(text)) == 32:
                return CurveKeys(text.encode(), public, secret)
        except (ValueError, KeyError):
            pass
        raise ValueError(f"server key {text!r}: neither a key file nor a Z85 public key")
    return CurveKeys(load_public(server_public), public, secret)

"""CurveZMQ for the matchers' sockets and their peers (docs/operations.md, "CurveZMQ").

ZeroMQ's own CURVE mechanism through pyzmq (`zmq.auth`): never a cipher of our own. Keys
are the Z85 certificate files `zmq.auth.create_certificates` writes (`python run.py keys
NAME --dir D`: NAME.key, the public key to hand out, and NAME.key_secret, the pair).

- A matcher is a CURVE server on its ROUTER and PUB. The ZAP handler (pyzmq's
  authenticator thread: it runs only at handshakes, nothing per request) lets in only the
  public keys the configuration lists; each names an account (a raw client that may act
  only as that account) or a trusted role (`gateway`, `feedhub`: may name any account).
  An unknown key gets no connection, and its refusal is logged once (then at most once a
  minute for all of them).
- The clients' side (CurveKeys, client_keys) is clients/curve.py; it loads key files
  with `load_public` and `load_pair` from here.
- The User-Id libzmq attaches to each message (ZAP's answer: the Z85 public key) tells
  the matcher which key sent a request: `Peers.get`.
- Beyond loopback a matcher binds, and a client connects, only with CURVE on:
  `exposure` names what would be exposed, and the process exits 2 with it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

if TYPE_CHECKING:  # the clients load keys with this module, without the configuration
    from matcher.system import CurveConfig

ZAP_DOMAIN = "matchwire"
REFUSAL_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class Peer:
    """Who a listed public key is: an account, or a trusted role."""

    account: str | None = None
    role: str | None = None

    @property
    def trusted(self) -> bool:
        return self.role is not None


def _load_certificate(path: str | Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"CURVE key file {path}: {exc}") from None
    if not public:
        raise ValueError(f"CURVE key file {path} holds no public key")
    return public, secret


def load_public(path: str | Path) -> bytes:
    """The public key of a certificate file; ValueError naming the file if it has none.
    The one loader of key files, for the matchers and their clients (clients/curve.py)."""
    return _load_certificate(path)[0]


def load_pair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) of a `.key_secret` file; ValueError if it holds no secret."""
    public, secret = _load_certificate(path)
    if not secret:
        raise ValueError(f"CURVE key file {path} holds no secret key (a .key_secret file?)")
    return public, secret


class Peers:
    """The listed client keys: Z85 public key (the User-Id) -> Peer."""

    def __init__(self, peers: dict[str, Peer]) -> None:
        self.peers = peers
        self._refused: set[str] = set()
        self._refusals = 0
        self._logged_at = 0.0

    def get(self, user_id: str | None) -> Peer | None:
        return self.peers.get(user_id) if user_id else None

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: whether the public key `key` (Z85) may connect."""
        z85_key = key.decode("ascii", "replace")
        if z85_key in self.peers:
            return True
        self._refusals += 1
        now = time.monotonic()
        if z85_key not in self._refused or now - self._logged_at >= REFUSAL_LOG_SECONDS:
            if len(self._refused) < 10_000:
                self._refused.add(z85_key)
            self._logged_at = now
            logging.getLogger("matchwire.matcher").warning(
                "CURVE: refused a connection from the unlisted key %s (%d refusals so far)",
                z85_key,
                self._refusals,
            )
        return False


def start_authenticator(context: zmq.Context[Any], peers: Peers) -> ThreadAuthenticator:
    """pyzmq's ZAP handler thread for `context`, letting in only `peers`."""
    auth = ThreadAuthenticator(context, log=logging.getLogger("matchwire.zap"))
    auth.start()
    auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=peers)
    return auth


def make_server(sock: zmq.Socket[Any], secret: bytes) -> None:
    """Make `sock` a CURVE server (before it binds): only ZAP-approved peers get in."""
    sock.zap_domain = ZAP_DOMAIN.encode()
    sock.curve_secretkey = secret
    sock.curve_server = True


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, or `*`: reachable from beyond this host


def beyond_loopback(endpoint: str) -> bool:
    """Whether a ZeroMQ endpoint may be reached from another host: tcp:// (or another
    network transport) on an address that is not loopback. ipc:// and inproc:// stay
    on this host."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return False
    host = rest.rpartition(":")[0]
    if ";" in host:  # tcp://source;destination:port: the destination counts
        host = host.rpartition(";")[2]
    return not is_loopback_host(host)


def exposure(what: str, endpoints: list[str], curve: bool) -> str | None:
    """Why `what` must not start: an endpoint beyond loopback without CURVE (None: fine)."""
    if curve:
        return None
    exposed = [endpoint for endpoint in endpoints if beyond_loopback(endpoint)]
    if not exposed:
        return None
    return (
        f"{what}: refusing {', '.join(exposed)} beyond loopback without CurveZMQ: "
        "configure [curve] (docs/operations.md) or use 127.0.0.1"
    )


@dataclass(frozen=True)
class ServerCurve:
    """What a matcher needs to serve CURVE: its key pair and the listed peers."""

    public: bytes
    secret: bytes
    peers: Peers


def server_curve(config: CurveConfig) -> ServerCurve:
    """Load a matcher's keys from `[curve]`; ValueError naming the file or entry."""
    if config.matcher_secret is None:
        raise ValueError("[curve] needs matcher_secret on a matcher's host")
    public, secret = load_pair(config.matcher_secret)
    peers: dict[str, Peer] = {}
    for client in config.clients:
        key = load_public(client.public_key).decode()
        if key in peers:
            raise ValueError(f"[curve] {client.public_key}: the same key is listed twice")
        peers[key] = Peer(client.account, client.role)
    return ServerCurve(public, secret, Peers(peers))

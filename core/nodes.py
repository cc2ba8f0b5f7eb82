"""Credentials between the nodes of a cluster, signed with ``cluster_secret``.

A node proves it is one to another node by a short credential: its node id, the time
and an HMAC-SHA256 of both under the shared secret. It travels in the ``custom`` of a
WCS ``connection`` (``NODE_FIELD``: the other node's session is then a node's,
``SessionInfo.node``) and in the ``NODE_HEADER`` of a REST call (which then passes the
REST API's auth like the token would). A credential is good for ``MAX_AGE`` seconds
either side of the receiver's clock; with no secret configured, none is ever good.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, Protocol

#: the key of a ``connection`` message's ``custom`` carrying a node credential
NODE_FIELD = "hookcastNode"
#: the HTTP header carrying a node credential on REST calls between nodes
NODE_HEADER = "X-Hookcast-Node"
#: seconds a credential stays good (clocks of nodes may differ by that much)
MAX_AGE = 120.0
#: longest node id a credential may carry
MAX_NODE_ID = 200


def _mac(secret: str, node: str, stamp: str) -> str:
    return hmac.new(secret.encode(), f"{node}\n{stamp}".encode(), hashlib.sha256).hexdigest()


def node_credential(secret: str, node: str, now: float | None = None) -> str:
    """The credential of ``node``: ``<stamp>.<mac>.<node>``."""
    stamp = str(int(time.time() if now is None else now))
    return f"{stamp}.{_mac(secret, node, stamp)}.{node}"


def node_of(secret: str, credential: object, now: float | None = None) -> str | None:
    """The node id a credential proves, or None (no secret, malformed, stale, forged)."""
    if not secret or not isinstance(credential, str) or len(credential) > 300:
        return None
    stamp, _, rest = credential.partition(".")
    mac, _, node = rest.partition(".")
    if not stamp.isdigit() or not node or len(node) > MAX_NODE_ID or not node.isprintable():
        return None
    if abs((time.time() if now is None else now) - int(stamp)) > MAX_AGE:
        return None
    if not hmac.compare_digest(mac, _mac(secret, node, stamp)):
        return None
    return node


class Cluster(Protocol):
    """The cluster this server is a node of, as the core uses it (``MediaCore.cluster``,
    set by the plugin that joins one): the REST API asks the other nodes through it."""

    #: this node's id, named in every stream entry the REST API answers
    node_id: str

    async def across(self, path: str, body: Any) -> tuple[list[tuple[str, int, Any]], list[str]]:
        """POST ``body`` to the REST method ``path`` of every other live node, as a node
        (answered for that node alone): ``(node, status, answer)`` for each that
        answered, and the ids of those that did not (in time). Raises ``ClusterDown``."""
        ...


class ClusterDown(Exception):
    """The cluster's directory cannot be reached: the message says what failed."""

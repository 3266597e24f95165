"""Transports: how a client reaches a node. ``base`` is the interface; ``local`` is the
in-process one; ``tcp`` the network one (its wire format in ``frames``, its control
messages in ``codec``); ``rdma`` its sibling that moves payloads by RDMA (untested on
hardware). Each network transport imports its dependencies only in its own module
(``rdma`` imports pyverbs only when a connection is set up), so importing this package
pulls in nothing optional."""

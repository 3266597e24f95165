"""Transports: how a client reaches a node. ``base`` is the interface; ``local`` is the
in-process one. Network transports (tcp, rdma) import their dependencies only in their
own module, so importing this package pulls in nothing optional."""

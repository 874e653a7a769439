"""The node's gRPC server: servicers, client sessions (server side), the process entry.

Layering rule: dependencies point down only, ``server -> node -> net -> core``.
- ``kvstore.server`` (this package) adapts gRPC to a node: the servicers authorize and
  translate calls, ``session`` serves ``KV.Session`` streams, ``kv_calls`` is the one
  path of a client call, and ``main`` is the process entry (``serve()``/``run()``) that
  builds a node and serves it. It may import everything below it.
- ``kvstore.node`` (the runtime) never imports this package, so a node can run without
  its gRPC server (the simulator does).
- ``kvstore.net`` (peer links, channels, codecs, the wire status mapping) imports
  neither ``kvstore.node`` nor this package.
- ``kvstore.core`` imports no other kvstore package but ``kvstore.errors``.
``tests/core/test_layering.py`` enforces these rules.
"""

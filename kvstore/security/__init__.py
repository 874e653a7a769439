"""The trust boundary: certificates, identities and roles, gRPC credentials.

Rules:
- Identity comes from a verified X.509 certificate, never from a header or a frame.
- A certificate's subject says who it is: ``CN`` is the name (a node id or a client's
  name) and ``OU`` its kind: ``node``, or a client role ``read``, ``write`` or ``admin``.
- Everything here is below ``kvstore.net`` and ``kvstore.server``: the links and the
  servicers use it, it uses neither.
"""

"""HTTP/1.1 on trio streams with httptools.

Owns: ``h1`` and ``h1client`` (server- and client-side framing, no I/O), ``sse`` (event
stream framing, no I/O), ``server`` (the connection loop) and ``client`` (pooled webhook
client), both I/O on trio. May import core only.
"""

"""The device gateway channel.

Owns: ``protocol`` (msgpack framing and frame rules, no I/O), ``hub`` (the TCP and Unix
listeners and each gateway's connection: I/O on trio), ``client`` (a Python gateway for
tests, tools and the benchmarks). May import core, http, config, hooks and journal.
"""

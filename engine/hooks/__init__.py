"""The live hook set: which hooks an event triggers (``router``).

Owns the hooks compiled from the config, found by name, and the one place that enables and
disables them. May import core, templates and config. No I/O.
"""

"""The config file: TOML (and Particle webhook JSON) into plain, validated, frozen records.

Owns: ``settings`` (the records, loading, errors with file and key path), ``_fields`` (the
field readers and duration/network parsing). May import core and templates. No I/O beyond
reading the file it is given.
"""

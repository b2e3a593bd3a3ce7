"""Hookwire: the integrations engine of a Trackle/Particle-style IoT cloud."""

__version__ = "0.1.0"

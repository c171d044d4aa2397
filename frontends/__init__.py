"""Frontends of qti-net: clients of the public contract only (INTERFACE.md), never of a service's code."""

"""Shared mechanics of every qti-net service.

Settings, broker, outbox/inbox, migrations, health, metrics and logs live here once.
"""

"""The portal: the German reference frontend (INTERFACE.md, "v2 additions", port 8000).

It reads the catalogue's and registration's HTTP APIs, publishes `registration.requested` and
`registration.cancellation_requested` over AMQP as the `frontend` broker user, and never imports a
service or reads a service's schema (tests/portal/test_boundary.py keeps it so).
"""

"""Development tools, never part of a service or its image: the mail sink and the demo catalogue.

`make run` (`qti run`) starts `python -m devtools.mail_sink` and loads `python -m devtools.demo`; tests and
benchmarks use both. Services never import this package (tests/architecture checks it).
"""

"""The host layer: what runs, documents and operates the services from their definitions.

`qti_runtime` is the floor every service stands on and knows none of them; each service declares itself
once (`services.<name>.app.DEFINITION`, a `qti_runtime.definition.ServiceDefinition`); this package reads
those definitions: the `qti` command line (`cli`), the local process supervisor of `make run`
(`procfile`), the operator actions that need a service's hooks (`ops`), and the AsyncAPI and OpenAPI
documents (`asyncapi`, `openapi`).
"""

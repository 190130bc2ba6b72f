"""Network I/O adapters shared by services and delivery: the outbound-address guard and TLS contexts.

Not use cases (services) and not the worker (delivery): both layers build on them, so they sit below both and
import only the domain.
"""

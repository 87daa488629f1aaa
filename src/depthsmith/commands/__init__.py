"""The sub-commands' bodies, above the library: each turns arguments into library calls, prints
what a person reads, and returns the exit code. Nothing in the library imports from here.

``depthsmith.cli`` parses ``argv`` and calls one of these; each is also a Python function
(``from depthsmith.commands.predict import predict_cli``) for scripts and tests.
"""

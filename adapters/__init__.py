"""Adapters: bring other systems' data into the FHIR store and give it back in their formats.

Each adapter calls the same services the HTTP API calls (``fhir_server.operations.bundle.
run_transaction`` for writes); none calls the server over HTTP in-process.
"""

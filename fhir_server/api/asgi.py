"""ASGI entry point for multi-worker serving: ``uvicorn fhir_server.api.asgi:app``.

Settings come from the environment (``FHIR_DATABASE_URL`` ...), one Server per worker process.
"""

from fhir_server.api.app import create_app
from fhir_server.server import start_server
from fhir_server.settings import Settings

app = create_app(start_server(Settings()))

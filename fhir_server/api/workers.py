"""``serve --workers N``: N worker processes on listening sockets bound once, here.

uvicorn's supervisor spawns the workers and restarts one that dies. Each gets the HTTP socket
and a ``WorkerApp``, both pickled across (``BalancedListener.__reduce__`` sends the sockets'
descriptors), and builds its own server and app from the settings it was given. With
``--mllp-port``, each worker also takes HL7 v2 connections on a shared MLLP socket: a sender's
messages are applied in order across the workers by a lock per sender in the database
(``InboundPipeline.sender_turn``).

The sockets are bound with ``IPPROTO_TCP`` rather than by uvicorn: uvicorn's own multi-worker
listener has ``proto`` 0, so asyncio never sets TCP_NODELAY on accepted connections and every
keep-alive request waits ~40 ms for a delayed ACK (uvicorn issue #3149).
"""

from __future__ import annotations

import functools

import uvicorn
from uvicorn.supervisors import Multiprocess

from fhir_server.api.balanced_listener import BalancedListener
from fhir_server.settings import Settings

__all__ = ["WorkerApp", "serve_workers"]


class WorkerApp:
    """The app factory uvicorn calls in each worker: the FHIR app over the worker's own server,
    listening for MLLP on ``mllp`` too when given, for as long as the app runs; the server is
    closed when the worker stops."""

    def __init__(self, settings: Settings, mllp: BalancedListener | None = None):
        self.settings = settings
        self.mllp = mllp

    def __call__(self):
        from fhir_server.api.app import create_app, serving
        from fhir_server.server import start_server

        server = start_server(self.settings)
        beside, mllp = None, self.mllp
        if mllp is not None:
            from adapters.hl7v2.cli import mllp_listening

            # a stopped process's unfinished messages were written by the parent, before the workers
            beside = functools.partial(mllp_listening, server, sock=mllp, finish_interrupted=False)
        return serving(create_app(server), server, beside)


def serve_workers(settings: Settings, host: str, port: int, workers: int, mllp_port: int | None = None) -> None:
    """Serve HTTP (and MLLP on ``mllp_port``) from ``workers`` processes until stopped; each new
    connection goes to the worker holding the fewest (``balanced_listener.py``)."""
    mllp = BalancedListener.for_workers(host, mllp_port, workers) if mllp_port is not None else None
    # the asyncio loop: its accept is the listener's own (uvloop accepts in C, past the balancing)
    config = uvicorn.Config(WorkerApp(settings, mllp), factory=True, host=host, port=port, workers=workers,
                            log_level="warning", access_log=False, loop="asyncio")
    Multiprocess(config, sockets=[BalancedListener.for_workers(host, port, workers)]).run()

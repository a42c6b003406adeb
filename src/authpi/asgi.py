"""ASGI entry point for uvicorn workers: ``uvicorn authpi.asgi:app``."""

from authpi.app import create_app

app = create_app()

"""The REST API (docs/interface.md section 4): thin FastAPI routes over plain business functions."""

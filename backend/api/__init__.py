"""The REST API (DESIGN.md section 4): thin FastAPI routes over plain business functions."""

"""Request and response models of the REST API, shared by the server and the light client.

The server's routes use these classes as their ``response_model``s (``app.schemas`` re-exports them),
so the client parses exactly what the server serialises; nothing here imports torch, FastAPI or the
database.
"""

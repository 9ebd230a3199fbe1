"""The internal dashboard: server-rendered pages at ``/`` over the same services as the API."""

"""Pydantic request/response schemas, one module per resource (``XRead``, ``XCreated``, ``XList``).

The torch-free ones are defined once in the light client's package (``priorprobe_client.schemas``)
and re-exported here, so the server serialises exactly the classes CI clients parse.
"""

"""The REST gateway and the dashboard (see README.md in this folder, docs/api.md).

Layer: above matcher/ and clients/, beside feedhub/ (docs/architecture.md): it speaks
to the matchers over its own links (matchers.py, zmq_link.py) and imports nothing from
feedhub/. tests/test_layers.py keeps it so.
"""

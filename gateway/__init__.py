"""The REST gateway and the dashboard (see README.md in this folder, docs/api.md)."""

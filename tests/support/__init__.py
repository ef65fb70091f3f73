"""Helpers shared by the test modules: servers, raw HTTP, scripted answers, waiting.

No test module imports another; what two of them share lives here. Fixtures every test
needs stay in ``tests/conftest.py``.
"""

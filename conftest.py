"""Root conftest: the shared real-service fixtures for every package's tests."""

pytest_plugins = ["testing.fixtures"]

"""Root of the test tree. Being a conftest.py outside any package, pytest puts
this directory on sys.path, which makes the modules shared by the unit and
the integration tests (preconditions.py) importable from both."""

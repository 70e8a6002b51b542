from tests.integration.conftest import real_services, settings, start_worker  # noqa: F401 - shared fixtures

"""Fixtures of the search tests."""

import pytest

KERASTUNER_VARIABLES = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")


@pytest.fixture(autouse=True)
def _no_kerastuner_role(monkeypatch):
    """Each test starts and ends with no distributed role in the environment.

    `search.main` with `--role` sets KerasTuner's variables in `os.environ`, as a CLI should;
    left behind, they would make every later search in the same pytest worker a worker.
    """
    for name in KERASTUNER_VARIABLES:
        monkeypatch.setenv(name, "")  # records the original value, restored after the test
        monkeypatch.delenv(name)

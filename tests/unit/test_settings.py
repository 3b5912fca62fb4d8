"""Settings: groups, the one table of environment variables, strict overrides, nothing computed at import."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbjobs.errors import ConfigurationError
from nbjobs.settings import FIELDS, PoolSettings, Settings, env_var_of, load_settings

# The fields no environment variable sets (a flag, code, or the whole environment for kernel_env).
WITHOUT_ENV = {"default_kernel_name", "kernel_env", "cleanup_interval_seconds"}


def _groups(settings: Settings) -> dict[str, object]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def test_every_field_of_every_group_is_one_row_of_the_table():
    declared = {
        (group, f.name) for group, value in _groups(Settings()).items() for f in dataclasses.fields(value)
    }
    assert declared == {(row.group, name) for name, row in FIELDS.items()}
    assert len(declared) == len(FIELDS) == 73  # names are unique across groups
    assert {name for name, row in FIELDS.items() if row.env is None} == WITHOUT_ENV
    variables = [row.env for row in FIELDS.values() if row.env is not None]
    assert len(variables) == len(set(variables))  # no variable sets two fields
    for name, row in FIELDS.items():
        assert env_var_of(name) == row.env
        assert row.env in (None, f"NBJOBS_{name.upper()}")


def _text_for(name: str, default: object) -> tuple[str, object]:
    """A valid environment text for the field ``name`` (not its default) and the value it gives."""
    if name == "broker_transport_options":
        return '{"visibility_timeout": 7}', '{"visibility_timeout": 7}'
    if name == "data_dir":
        return "elsewhere", Path("elsewhere").resolve()
    if name == "log_format":
        return "json", "json"
    if name == "log_level":
        return "DEBUG", "DEBUG"
    if name == "portal_deployment":
        return "kubernetes", "kubernetes"
    if isinstance(default, bool):  # the other value than the default (fork_kernels defaults to on)
        return ("no", False) if default else ("yes", True)
    if isinstance(default, int) and name != "max_execute_notebook_time_minutes":
        return "7", 7
    if isinstance(default, int | float):
        return "7.5", 7.5
    if default is None:  # cert_file and key_file
        return "/etc/nbjobs/x.pem", Path("/etc/nbjobs/x.pem")
    return "x7", "x7"


def test_every_environment_variable_sets_its_field_and_only_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    baseline = load_settings({})
    for name, row in FIELDS.items():
        if row.env is None:
            continue
        text, expected = _text_for(name, Settings().value_of(name))
        assert baseline.value_of(name) != expected, name
        loaded = load_settings({row.env: text})
        assert loaded.value_of(name) == expected, row.env
        assert loaded == baseline.with_overrides(**{name: expected}), row.env


def test_an_environment_variable_that_does_not_parse_names_itself():
    with pytest.raises(ConfigurationError, match=r"^NBJOBS_PORT='https' is not a valid int$"):
        load_settings({"NBJOBS_PORT": "https"})
    with pytest.raises(ConfigurationError, match=r"^NBJOBS_POLL_SECONDS='soon' is not a valid float$"):
        load_settings({"NBJOBS_POLL_SECONDS": "soon"})


def test_an_unknown_override_is_an_error_naming_it():
    with pytest.raises(ConfigurationError, match=r"unknown setting 'wrokers'; did you mean 'workers'\?"):
        load_settings({}, wrokers=1)
    with pytest.raises(ConfigurationError, match="unknown setting 'pool'"):
        load_settings({}, pool=PoolSettings(workers=1))  # groups are not overrides
    with pytest.raises(ConfigurationError, match="unknown setting 'frobnicate'$"):
        load_settings({}, frobnicate=None)  # even when "not given": the name is still wrong
    with pytest.raises(ConfigurationError, match="unknown setting 'port_number'"):
        Settings().with_overrides(port_number=9000)


def test_overrides_are_flat_names_and_none_means_not_given():
    settings = load_settings({"NBJOBS_PORT": "9000"}, port=None, workers=3, poll_seconds=0.1)
    assert settings.server.port == 9000  # the environment's, not the None flag's
    assert settings.pool.workers == 3 and settings.execution.poll_seconds == 0.1
    changed = settings.with_overrides(port=9001, max_upload_bytes=None, broker_url="redis://q/0")
    assert changed.server.port == 9001 and changed.limits.max_upload_bytes == settings.limits.max_upload_bytes
    assert changed.broker.broker_url == "redis://q/0" and settings.broker.broker_url == ""
    assert changed.store is settings.store  # untouched groups are shared, not copied


def test_groups_and_settings_are_frozen():
    settings = Settings()
    for group, value in _groups(settings).items():
        name = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(settings, group, None)


def test_the_cpu_count_is_read_when_settings_are_loaded_not_at_import(monkeypatch):
    (workers,) = [f for f in dataclasses.fields(PoolSettings) if f.name == "workers"]
    assert workers.default is dataclasses.MISSING  # a factory, not an int fixed at import
    monkeypatch.setattr("os.cpu_count", lambda: 7)
    assert load_settings({}).pool.workers == 7 and Settings().pool.workers == 7
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert load_settings({}).pool.workers == 1
    assert load_settings({"NBJOBS_WORKERS": "0"}).pool.workers == 0


def test_importing_the_settings_asks_nothing_of_the_machine():
    probe = """
import json, os
calls = []
os.cpu_count = lambda: calls.append("cpu_count") or 5
import nbjobs.settings
at_import = list(calls)
workers = nbjobs.settings.load_settings({}).pool.workers
print(json.dumps([at_import, workers]))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [[], 5]


def test_value_of_reads_a_field_by_its_flat_name():
    settings = load_settings({"NBJOBS_MAX_ACTIVE_TASKS": "3"})
    assert settings.value_of("max_active_tasks") == settings.limits.max_active_tasks == 3
    with pytest.raises(ConfigurationError, match="did you mean 'max_active_tasks'"):
        settings.value_of("max_active_task")


def test_validation_messages_are_unchanged():
    cases = {
        "workers": (-1, "workers must be 0 or more, got -1"),
        "max_parameters": (-1, "max_parameters must be 0 or more, got -1"),
        "max_request_bytes": (0, "max_request_bytes must be a positive number, got 0"),
        "context": ("a/b", "context must be one path segment, got 'a/b'"),
        "broker_transport_options": ("[1]", "NBJOBS_BROKER_TRANSPORT_OPTIONS must be a JSON object"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(ConfigurationError) as raised:
            load_settings({}, **{name: value})
        assert raised.value.message == message, name


@pytest.mark.parametrize("name", ["NBJOBS_LAB_START_TIMEOUT_SECONDS", "NBJOBS_LAB_CHECK_SECONDS"])
def test_the_notebook_servers_timings_must_be_positive(name):
    with pytest.raises(ConfigurationError, match="must be a positive number"):
        load_settings({name: "0"})


def test_the_portal_deployment_is_classic_or_kubernetes():
    with pytest.raises(ConfigurationError, match="NBJOBS_PORTAL_DEPLOYMENT must be empty or kubernetes"):
        load_settings({"NBJOBS_PORTAL_DEPLOYMENT": "k3s"})

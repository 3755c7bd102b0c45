from pathlib import Path

import pytest

from livecast.config import ConfigError, load_settings


def test_defaults_follow_design() -> None:
    s = load_settings({})
    assert (s.http_port, s.rtmp_port, s.irc_port) == (8080, 1935, 6667)
    assert s.host == "127.0.0.1"
    assert s.bus_url == "memory://"
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url.endswith("var/livecast.db")
    assert s.resolved_storage_url.startswith("file://")
    assert s.reconnect_window == 60
    assert set(s.roles) == {"api", "web", "chat", "ingest", "worker"}


def test_env_overrides_and_backends_by_url() -> None:
    s = load_settings({
        "LIVECAST_DATABASE_URL": "postgresql://u@db/x",
        "LIVECAST_BUS_URL": "redis://127.0.0.1:6379/0",
        "LIVECAST_HTTP_PORT": "0",
        "LIVECAST_ROLES": "chat,api",
    })
    assert s.resolved_database_url == "postgresql+asyncpg://u@db/x"
    assert s.is_postgres
    assert s.http_port == 0
    assert s.roles == ("chat", "api")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LIVECAST_HTTP_PORT": "eighty"}, "LIVECAST_HTTP_PORT"),
        ({"LIVECAST_HTTP_PORT": "70000"}, "LIVECAST_HTTP_PORT"),
        ({"LIVECAST_BUS_URL": "kafka://x"}, "LIVECAST_BUS_URL"),
        ({"LIVECAST_DATABASE_URL": "mysql://x"}, "LIVECAST_DATABASE_URL"),
        ({"LIVECAST_ROLES": "chat,dance"}, "LIVECAST_ROLES"),
        ({"LIVECAST_RECONNECT_WINDOW": "-1"}, "LIVECAST_RECONNECT_WINDOW"),
        ({"LIVECAST_LOG_LEVEL": "LOUD"}, "LIVECAST_LOG_LEVEL"),
    ],
)
def test_wrong_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    message = str(err.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


def test_toml_file_then_env(tmp_path: Path) -> None:
    f = tmp_path / "livecast.toml"
    f.write_text('http_port = 9000\nirc_port = 7000\n[[ladder]]\nname = "source"\n')
    s = load_settings({"LIVECAST_CONFIG": str(f), "LIVECAST_IRC_PORT": "7001"})
    assert s.http_port == 9000
    assert s.irc_port == 7001
    assert [r.name for r in s.ladder] == ["source"]


def test_toml_errors_are_one_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("http_port = \n")
    with pytest.raises(ConfigError, match=r"^LIVECAST_CONFIG: "):
        load_settings({"LIVECAST_CONFIG": str(f)})
    f.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings({"LIVECAST_CONFIG": str(f)})

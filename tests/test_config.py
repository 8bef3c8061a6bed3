"""Settings validation: ``HUB_*`` variables are checked at start, and bad ones are named."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from realtime.base.config import DEFAULT_DATABASE_URL, DEV_JWT_SECRET, Environment, Settings
from realtime.base.identity import Role, TokenVerifier
from realtime.cli import can_migrate_apart, load_settings, retired

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET = "config-test-secret-0123456789-abcdefghijkl"
SUBPROCESS_TIMEOUT_S = 30


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """Set ``env``, load the settings and return the SystemExit message they cause."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        load_settings()
    message = caught.value.code
    assert isinstance(message, str), "load_settings must exit with a message, not a status"
    assert message.startswith("invalid configuration")
    return message


def hub_free_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any HUB_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(extra)
    return env


def run_cli(args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m realtime <args>`` from the project root with a HUB_*-free environment."""
    return subprocess.run(
        [sys.executable, "-m", "realtime", *shlex.split(args)],
        cwd=PROJECT_ROOT,
        env=hub_free_env(**env),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )


def ec_key_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


# -- defaults ----------------------------------------------------------------


def test_defaults_are_local_development() -> None:
    settings = load_settings()

    assert settings.env is Environment.DEVELOPMENT
    assert settings.port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.startswith("sqlite+aiosqlite://")
    assert settings.log_level == "INFO"


def test_development_secret_is_used_when_no_key_is_set() -> None:
    settings = load_settings()

    assert not settings.has_configured_keys
    assert settings.hs256_secret() == DEV_JWT_SECRET
    assert settings.public_key_pem() is None
    assert TokenVerifier(settings).algorithms == ["HS256"]


def test_configured_secret_replaces_the_development_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUB_JWT_SECRET", SECRET)

    settings = load_settings()

    assert settings.has_configured_keys
    assert settings.hs256_secret() == SECRET


def test_public_key_alone_disables_the_development_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, public = ec_key_pair()
    monkeypatch.setenv("HUB_JWT_PUBLIC_KEY", public)

    settings = load_settings()

    assert settings.hs256_secret() is None
    assert settings.public_key_pem() == public


def test_environment_values_are_read_and_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_PORT", "9100")
    monkeypatch.setenv("HUB_LOG_LEVEL", "debug")
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql+asyncpg://hub@db:5432/hub")

    settings = load_settings()

    assert settings.port == 9100
    assert settings.log_level == "DEBUG"
    assert settings.database_url == "postgresql+asyncpg://hub@db:5432/hub"


# -- production --------------------------------------------------------------


def test_production_without_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, HUB_ENV="production")

    assert "HUB_ENV=production" in message
    assert "HUB_JWT_SECRET" in message
    assert "HUB_JWT_PUBLIC_KEY" in message


def test_production_with_a_secret_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ENV", "production")
    monkeypatch.setenv("HUB_JWT_SECRET", SECRET)

    settings = load_settings()

    assert settings.env is Environment.PRODUCTION
    assert settings.hs256_secret() == SECRET


def test_production_with_only_a_public_key_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    _, public = ec_key_pair()
    monkeypatch.setenv("HUB_ENV", "production")
    monkeypatch.setenv("HUB_JWT_PUBLIC_KEY", public)

    settings = load_settings()

    assert settings.env is Environment.PRODUCTION
    assert settings.hs256_secret() is None


def test_production_refuses_the_development_secret_set_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # config.py: "the hub refuses to start with it when HUB_ENV=production". The
    # development secret is in the source, so a token signed with it is forgeable
    # by anyone, whether it arrives by fallback or by HUB_JWT_SECRET.
    message = config_error(monkeypatch, HUB_ENV="production", HUB_JWT_SECRET=DEV_JWT_SECRET)

    assert "HUB_JWT_SECRET" in message or "HUB_ENV=production" in message


def test_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, HUB_ENV="staging")

    assert "HUB_ENV" in message
    assert "'development' or 'production'" in message


# -- the HS256 secret --------------------------------------------------------


def test_short_secret_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    short = "s3cret-but-only-31-bytes-long!!"
    assert len(short.encode()) == 31

    message = config_error(monkeypatch, HUB_JWT_SECRET=short)

    assert "HUB_JWT_SECRET" in message
    assert "at least 32 bytes" in message
    assert short not in message


def test_secret_length_is_counted_in_bytes() -> None:
    # 16 two-byte characters: 32 bytes, enough for HS256 though only 16 characters.
    assert Settings(jwt_secret="é" * 16).hs256_secret() == "é" * 16
    assert Settings(jwt_secret="k" * 32).hs256_secret() == "k" * 32


# -- database, port, log level -----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hub:hunter2@db:5432/hub",
        "sqlite:///var/hub.db",
        "mysql+aiomysql://hub:hunter2@db/hub",
    ],
)
def test_non_async_database_url_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    message = config_error(monkeypatch, HUB_DATABASE_URL=url)

    assert "HUB_DATABASE_URL" in message
    assert "sqlite+aiosqlite://" in message
    assert "postgresql+asyncpg://" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("notaport", "valid integer"),
        ("70000", "less than or equal to 65535"),
        ("-1", "greater than or equal to 0"),
    ],
)
def test_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch, port: str, expected: str) -> None:
    message = config_error(monkeypatch, HUB_PORT=port)

    assert "HUB_PORT" in message
    assert expected in message


def test_bad_log_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, HUB_LOG_LEVEL="LOUD")

    assert "HUB_LOG_LEVEL" in message
    assert "logging level" in message
    assert "'LOUD'" in message


def test_every_bad_value_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, HUB_PORT="notaport", HUB_LOG_LEVEL="LOUD")

    assert "2 problem(s)" in message
    assert "HUB_PORT" in message
    assert "HUB_LOG_LEVEL" in message


# -- retired variables -------------------------------------------------------


def test_the_removed_sequenced_canvas_sharing_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment still set to the removed ``sequenced`` mode must not start as
    ``leased`` beside hubs of the old release in ``sequenced``: they would misread
    each other's canvas states in Redis."""
    message = config_error(monkeypatch, HUB_CANVAS_SHARING="sequenced", HUB_PORT="notaport")

    assert "2 problem(s)" in message
    assert "HUB_CANVAS_SHARING: got 'sequenced'" in message
    assert "'sequenced' was removed" in message and "leased" in message
    assert "HUB_PORT" in message


def test_canvas_sharing_leased_is_only_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("hub_canvas_sharing", "leased")  # Settings read names in any case

    assert isinstance(load_settings(), Settings)  # the hub starts
    problems, warnings = retired(os.environ)
    assert problems == []
    assert len(warnings) == 1 and warnings[0].startswith("HUB_CANVAS_SHARING: got 'leased'")


# -- public key --------------------------------------------------------------


def test_public_key_and_public_key_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, public = ec_key_pair()
    key_file = tmp_path / "lms.pem"
    key_file.write_text(public)

    message = config_error(
        monkeypatch, HUB_JWT_PUBLIC_KEY=public, HUB_JWT_PUBLIC_KEY_FILE=str(key_file)
    )

    assert "HUB_JWT_PUBLIC_KEY" in message
    assert "HUB_JWT_PUBLIC_KEY_FILE" in message
    assert "not both" in message


def test_public_key_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, public = ec_key_pair()
    key_file = tmp_path / "lms.pem"
    key_file.write_text(public)
    monkeypatch.setenv("HUB_JWT_PUBLIC_KEY_FILE", str(key_file))

    settings = load_settings()

    assert settings.public_key_pem() == public
    assert TokenVerifier(settings).algorithms == ["ES256"]


# -- the command line, as a subprocess ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("HUB_PORT", "notaport", "valid integer"),
        # The mode this release removed: the hub must not start as if it were leased.
        ("HUB_CANVAS_SHARING", "sequenced", "got 'sequenced'"),
    ],
)
def test_serve_with_a_bad_setting_exits_naming_it(name: str, value: str, expected: str) -> None:
    result = run_cli("serve", **{name: value})

    assert result.returncode != 0
    assert "invalid configuration (1 problem(s))" in result.stderr
    assert f"{name}: " in result.stderr
    assert expected in result.stderr


@pytest.mark.slow
def test_serve_with_canvas_sharing_leased_warns_naming_it() -> None:
    # Port 1 refuses the connection: the hub warns, then stops at the migration.
    result = run_cli(
        "serve",
        HUB_PORT="0",
        HUB_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/hub",
        HUB_CANVAS_SHARING="leased",
    )

    assert "HUB_CANVAS_SHARING: got 'leased', no longer read" in result.stderr
    assert "remove it" in result.stderr


@pytest.mark.slow
def test_serve_exits_when_the_migration_in_its_child_fails() -> None:
    # Port 1 refuses the connection: the child forked to migrate fails at once.
    result = run_cli(
        "serve", HUB_PORT="0", HUB_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:1/hub"
    )

    assert result.returncode != 0
    assert "database migration failed" in result.stderr
    assert "hub not started" in result.stderr
    assert "hub serving" not in result.stderr


@pytest.mark.parametrize(
    ("url", "apart"),
    [
        ("sqlite+aiosqlite:///var/hub.db", True),
        ("postgresql+asyncpg://hub@db/hub", True),
        ("sqlite+aiosqlite:///:memory:", False),
        ("sqlite+aiosqlite://", False),
        ("sqlite+aiosqlite:///file:hub?mode=memory&cache=shared&uri=true", False),
    ],
)
def test_only_a_database_another_process_can_open_is_migrated_apart(url: str, apart: bool) -> None:
    assert can_migrate_apart(url) is apart


@pytest.mark.slow
def test_token_command_prints_a_token_the_verifier_accepts() -> None:
    result = run_cli("token --sub u1 --role TUTOR --center c1 --name Ada", HUB_JWT_SECRET=SECRET)

    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    identity = TokenVerifier(Settings(jwt_secret=SECRET)).verify(token)
    assert (identity.user_id, identity.role, identity.center, identity.name) == (
        "u1",
        Role.TUTOR,
        "c1",
        "Ada",
    )


@pytest.mark.slow
def test_token_command_signs_with_a_private_key_file(tmp_path: Path) -> None:
    private, public = ec_key_pair()
    key_file = tmp_path / "signing.pem"
    key_file.write_text(private)

    key_arg = shlex.quote(str(key_file))
    result = run_cli(
        f"token --sub p1 --role PARENT --center c7 --private-key {key_arg} --algorithm ES256"
    )

    assert result.returncode == 0, result.stderr
    identity = TokenVerifier(Settings(jwt_public_key=public)).verify(result.stdout.strip())
    assert (identity.user_id, identity.role, identity.center) == ("p1", Role.PARENT, "c7")


def test_redis_cluster_nodes_are_host_port_pairs() -> None:
    settings = Settings(redis_cluster_nodes="127.0.0.1:7000, redis-2.internal:7001,[::1]:7002")
    assert settings.cluster_nodes == [
        ("127.0.0.1", 7000),
        ("redis-2.internal", 7001),
        ("::1", 7002),
    ]
    assert Settings().cluster_nodes == []
    for bad in ("127.0.0.1", "127.0.0.1:", "host:port", "h:70000", "h:7000,:7001"):
        with pytest.raises(ValueError, match="expected host:port"):
            Settings(redis_cluster_nodes=bad)


def test_one_redis_or_a_cluster_not_both() -> None:
    with pytest.raises(ValueError, match="HUB_REDIS_URL or HUB_REDIS_CLUSTER_NODES"):
        Settings(redis_url="redis://127.0.0.1:6379/0", redis_cluster_nodes="127.0.0.1:7000")

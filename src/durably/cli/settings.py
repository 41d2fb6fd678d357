"""How `durably serve`'s settings are given: every flag also as an environment variable and a TOML file key.

Precedence: flag > environment (`DURABLY_<NAME>`) > file (`--config durably.toml`, or `DURABLY_CONFIG`) >
default. `durably serve --dump-config` prints the effective settings, each with where it came from, as TOML
that can be saved as a config file.

It is derived from the `serve` command's own options, so a flag added to `serve` gets its variable and its
key without more code: `--admin-port` is `DURABLY_ADMIN_PORT` and `admin_port` (or `admin-port`) in the file.
Click resolves each setting from these sources; `durably.cli.serve` then turns the settings into the one
`ServerConfig` (durably.server.config) the server runs on.

Embedded mode has no command line: `from_environment` resolves the same command's settings from the
environment, the `DURABLY_CONFIG` file and the defaults alone, with click's own conversions and checks, so a
bad value is refused with the message `durably serve` would print.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

ENV_PREFIX = "DURABLY_"
_OWN = ("config", "dump_config")
_DUMP_KEY = "durably_dump_config"
# Words in a Kafka client property's name that mark its value as a secret (hidden by --dump-config).
_SECRET_WORDS = ("password", "secret", "token", "jaas", "private", "key.pem")


def _flatten_tables(key: str, value: Any) -> Any:
    """TOML tables for the Kafka settings, as the flags' repeated values:

        [kafka_cluster]                     ->  --kafka-cluster local=127.0.0.1:9092
        local = "127.0.0.1:9092"                (a list of brokers is joined with ",")
        [kafka_cluster_option.local]        ->  --kafka-cluster-option local:security.protocol=SASL_SSL
        "security.protocol" = "SASL_SSL"
    """
    if not isinstance(value, dict):
        return value
    if key == "kafka_cluster":
        return [f"{name}={','.join(v) if isinstance(v, list) else v}" for name, v in value.items()]
    if key == "kafka_cluster_option":
        return [f"{name}:{k}={v}" for name, props in value.items() if isinstance(props, dict)
                for k, v in props.items()]
    return value


def _hide_secret_option(text: str) -> str:
    name, sep, _ = text.partition("=")
    return f"{name}=(hidden)" if sep and any(w in name.lower() for w in _SECRET_WORDS) else text


def env_name(param_name: str) -> str:
    """The environment variable of a serve setting."""
    return ENV_PREFIX + param_name.upper()


def setting_name(param: click.Parameter) -> str:
    """A setting's name in the file and (upper-cased) in the environment: its long flag, with underscores."""
    if isinstance(param, click.Argument):
        return "app" if param.name == "app_ref" else str(param.name)
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0][2:].replace("-", "_") if longs else str(param.name)


def _settings(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if p.name not in _OWN and p.name is not None]


def _load(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    if not path:
        return
    command = ctx.command
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror}", ctx, param) from None
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{path} is not valid TOML: {e}", ctx, param) from None
    known = {setting_name(p): p for p in _settings(command)}
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        target = known.get(key.replace("-", "_"))
        if target is None:
            valid = ", ".join(sorted(known))
            raise click.BadParameter(f"{path}: unknown setting {key!r}; known: {valid}", ctx, param)
        value = _flatten_tables(setting_name(target), value)
        defaults[target.name] = str(value) if isinstance(value, Path) else value  # type: ignore[index]
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _mark_dump(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DUMP_KEY] = True


def _source(ctx: click.Context, param: click.Parameter) -> str:
    src = ctx.get_parameter_source(param.name)  # type: ignore[arg-type]
    if src == ParameterSource.COMMANDLINE:
        return "flag" if isinstance(param, click.Option) else "argument"
    if src == ParameterSource.ENVIRONMENT:
        return f"env {env_name(setting_name(param))}"
    if src == ParameterSource.DEFAULT_MAP:
        return "file"
    return "default"


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):  # a repeatable flag: a TOML array
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a TOML basic string has JSON's escapes


def dump(ctx: click.Context) -> str:
    """The effective settings as TOML, each line saying where its value came from."""
    lines = ["# durably serve: effective settings (flag > env > file > default)"]
    for param in _settings(ctx.command):
        key = setting_name(param)
        value = ctx.params.get(param.name, ctx.params.get(key))  # type: ignore[arg-type]
        if value is None:
            lines.append(f"# {key} is not set")
            continue
        if key.endswith(("_token", "_secret", "_password")):
            # A dump gets pasted into tickets and chats: say that a secret is set, never what it is.
            lines.append(f"# {key} is set (hidden)  # {_source(ctx, param)}")
            continue
        if key == "kafka_cluster_option":  # SASL passwords and the like
            value = [_hide_secret_option(str(v)) for v in value]
        lines.append(f"{key} = {_toml_value(value)}  # {_source(ctx, param)}")
    return "\n".join(lines)


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message is the one `durably serve` prints for it."""


@dataclass(frozen=True)
class Resolved:
    """A command's settings as resolved without a command line."""

    values: dict[str, Any]  # keyword argument name -> value, as the command's callback would get them
    given: frozenset[str]  # the keyword names set by the environment or the file (the others are defaults)


def from_environment(command: click.Command) -> Resolved:
    """The settings of `command` (serve) from DURABLY_* variables, the DURABLY_CONFIG file and the defaults.

    No command line and no running click command are needed: this is how embedded mode reads the settings
    `durably serve` takes. A value click refuses raises SettingsError with click's message.
    """
    try:
        ctx = command.make_context(command.name or "serve", [])
    except click.ClickException as e:
        raise SettingsError(e.format_message()) from None
    with ctx:
        given = frozenset(
            p.name for p in _settings(command)
            if p.name in ctx.params and ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT))
        return Resolved(dict(ctx.params), given)


def apply(command: click.Command) -> None:
    """Give `serve` its environment variables, `--config` and `--dump-config`."""
    for param in _settings(command):
        if isinstance(param, click.Option) and param.envvar is None:
            param.envvar = env_name(setting_name(param))
            param.show_envvar = True
        elif isinstance(param, click.Argument) and param.name == "app_ref":
            param.envvar = env_name("app")
    command.params.append(click.Option(
        ["--config"], metavar="FILE", envvar=env_name("config"), show_envvar=True, is_eager=True,
        expose_value=False, callback=_load, type=click.Path(dir_okay=False),
        help="TOML file of settings (keys as the flags: port = 8080, data_dir = \"...\", app = \"mod:app\")."))
    command.params.append(click.Option(
        ["--dump-config"], is_flag=True, expose_value=False, callback=_mark_dump,
        help="Print the effective settings (and where each came from) as TOML, and exit."))
    original: Callable[..., Any] = command.callback  # type: ignore[assignment]

    def callback(**kwargs: Any) -> Any:
        ctx = click.get_current_context()
        if ctx.meta.get(_DUMP_KEY):
            click.echo(dump(ctx))
            sys.exit(0)
        return original(**kwargs)

    command.callback = callback


def table(command: click.Command) -> str:
    """The README's table of settings: flag, variable, file key, default, what it does."""
    rows = ["| flag | environment | file key | default | what |", "| --- | --- | --- | --- | --- |"]
    for param in command.params:
        if param.name == "dump_config":
            continue
        if isinstance(param, click.Argument):
            flag, key = "APP", "`app`"
            what = "module:app, path/to/file.py[:app] or a package to serve (none: a pure server)"
        else:
            assert isinstance(param, click.Option)
            flag = " / ".join(param.opts + param.secondary_opts)
            key = "-" if param.name == "config" else f"`{setting_name(param)}`"
            what = (param.help or "").split(". ")[0].rstrip(".")
        env = param.envvar if isinstance(param.envvar, str) else env_name(setting_name(param))
        default = param.default
        if isinstance(param, click.Option) and param.is_flag and not isinstance(default, bool):
            default = False
        if isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, str | int | float | Path):
            shown = f"`{default}`"
        else:
            shown = "-"
        rows.append(f"| `{flag}` | `{env}` | {key} | {shown} | {what} |")
    return "\n".join(rows)

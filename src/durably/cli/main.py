"""The `durably` command group: each command lives in a module of its own, registered here.

    durably serve module:app                         run the server (ingress :8080, admin API :9070)   serve.py
    durably invoke Service/handler '"json"'          call a handler (or Object/key/handler)            invoke.py
    durably invocations list|describe|cancel|...     the admin API's invocations                       invocations.py
    durably services list                            the served services and handlers                  services.py
    durably deployments register|list|remove         remote deployments                                deployments.py
    durably subscriptions list|create|delete         Kafka subscriptions                               subscriptions.py
    durably rules list|set|delete                    concurrency rules                                  rules.py
    durably state get|set|edit|clear OBJECT KEY      a virtual object's state                           state.py
    durably backup --data-dir D OUT                  a consistent copy of a data directory             backup.py
    durably keys generate|public                     request identity keys                             keys.py
    durably run CMD...                               a program serving an app, with the runtime in it  run.py
    durably endpoint APP                             the app as a Restate deployment                   endpoint.py
"""

from __future__ import annotations

import click

from durably.cli.backup import backup
from durably.cli.deployments import deployments
from durably.cli.endpoint import endpoint
from durably.cli.invocations import invocations
from durably.cli.invoke import invoke
from durably.cli.keys import keys
from durably.cli.rules import rules
from durably.cli.run import run
from durably.cli.serve import serve
from durably.cli.services import services
from durably.cli.state import state
from durably.cli.subscriptions import subscriptions


@click.group()
@click.version_option(package_name="durably")
def main() -> None:
    """Durable execution for Python."""


for _command in (serve, backup, invoke, invocations, services, deployments, subscriptions, rules, run, endpoint, keys,
                 state):
    main.add_command(_command)

__all__ = ["main", "serve"]

if __name__ == "__main__":
    main()

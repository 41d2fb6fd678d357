"""Shaped like Restate's Python template (`python __main__.py`): the app is built in main(), which starts
hypercorn itself. The only changes from the template are the import and a bind address a test can choose."""

import asyncio
import os

import hypercorn
from steps import steps

import durably as restate


def main():
    app = restate.app(services=[steps])

    conf = hypercorn.Config()
    conf.bind = [os.environ.get("TEMPLATE_BIND", "127.0.0.1:9080")]
    asyncio.run(hypercorn.asyncio.serve(app, conf))


if __name__ == "__main__":
    main()

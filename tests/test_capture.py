"""`durably serve script.py` finds an app the script builds only inside main() (Restate's templates), without
running the script's own server call."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from durably.hosting.loader import AppLoadError, load_app

SERVICE = """
import durably as restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx, name: str) -> str:
    return "hi " + name
"""


@pytest.fixture(autouse=True)
def _isolated_imports() -> Iterator[None]:
    """The scripts are imported under their file names: forget them (and their sys.path entries) afterwards."""
    modules, path = set(sys.modules), list(sys.path)
    yield
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def script(tmp_path: Path, body: str, name: str = "__main__.py") -> Path:
    """A script in its own directory; its 'server' writes `served` next to it, so a test sees if it ran."""
    d = tmp_path / "proj"
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text(SERVICE + textwrap.dedent(body).replace("SERVED", repr(str(d / "served"))))
    return path


def test_app_built_in_main_is_found_and_the_server_call_never_runs(tmp_path: Path) -> None:
    path = script(tmp_path, """
        def serve(app):
            open(SERVED, "w").close()

        def main():
            app = restate.app(services=[greeter])
            serve(app)

        if __name__ == "__main__":
            main()
        """)
    app = load_app(str(path))
    assert list(app.services) == ["Greeter"]
    assert not (path.parent / "served").exists()


def test_async_main(tmp_path: Path) -> None:
    path = script(tmp_path, """
        import asyncio

        async def main():
            app = restate.app(services=[greeter])
            open(SERVED, "w").close()

        if __name__ == "__main__":
            asyncio.run(main())
        """, name="async_entry.py")
    assert list(load_app(str(path)).services) == ["Greeter"]
    assert not (path.parent / "served").exists()


def test_app_built_under_the_main_guard_without_a_main_function(tmp_path: Path) -> None:
    path = script(tmp_path, """
        if __name__ == "__main__":
            app = restate.app(services=[greeter])
            open(SERVED, "w").close()
        """)
    assert list(load_app(str(path)).services) == ["Greeter"]
    assert not (path.parent / "served").exists()


def test_main_that_builds_no_app_is_a_clear_error(tmp_path: Path) -> None:
    path = script(tmp_path, """
        def main():
            return None
        """, name="noapp.py")
    with pytest.raises(AppLoadError, match="has no durably app"):
        load_app(str(path))


def test_main_that_fails_first_names_the_failure(tmp_path: Path) -> None:
    path = script(tmp_path, """
        def main():
            raise RuntimeError("OPENAI_API_KEY is not set")
        """, name="broken.py")
    with pytest.raises(AppLoadError, match=r"broken.main\(\) failed before it built a durably app: "
                                           r"RuntimeError: OPENAI_API_KEY is not set"):
        load_app(str(path))


def test_module_level_app_wins_and_main_is_not_called(tmp_path: Path) -> None:
    path = script(tmp_path, """
        app = restate.app(services=[greeter])

        def main():
            open(SERVED, "w").close()
        """, name="modlevel.py")
    assert list(load_app(str(path)).services) == ["Greeter"]
    assert not (path.parent / "served").exists()

"""`durably serve APP`: apps load the way users write them (issue 12, items 11-13)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from durably.hosting.loader import AppLoadError, load_app

SERVICE = """
import durably
svc = durably.Service("{name}")

@svc.handler()
async def hi(ctx: durably.Context) -> str:
    return "hi"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A working directory to write a project into; sys.path and sys.modules are restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)

    def write(rel: str, text: str) -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    yield write
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_file_in_a_subdirectory_imports_from_the_working_directory(project) -> None:
    project("app/utils.py", SERVICE.format(name="Blocks"))
    project("app/1_building_blocks.py", """
        import durably
        from app.utils import svc
        app = durably.app(services=[svc])
    """)
    app = load_app("app/1_building_blocks.py:app")
    assert list(app.services) == ["Blocks"]
    assert list(load_app("app/1_building_blocks:app").services) == ["Blocks"]  # hypercorn's form, no .py


def test_main_file_is_not_run_as_main(project) -> None:
    project("agent.py", SERVICE.format(name="Agent"))
    project("__main__.py", """
        import durably
        from agent import svc
        app = durably.app(services=[svc])

        def main():
            raise SystemExit("the script's main() ran: it would have started hypercorn")

        if __name__ == "__main__":
            main()
    """)
    app = load_app("__main__.py:app")
    assert list(app.services) == ["Agent"]
    assert sys.modules["__main__"].__name__ == "__main__"  # pytest's own, untouched


def test_main_file_of_a_subdirectory_imports_its_siblings(project) -> None:
    project("template/agent.py", SERVICE.format(name="Sibling"))
    project("template/__main__.py", """
        import durably
        from agent import svc
        app = durably.app(services=[svc])
        if __name__ == "__main__":
            raise SystemExit("ran as __main__")
    """)
    assert list(load_app("template/__main__.py").services) == ["Sibling"]


def test_relative_imports_work_in_a_directory_without_init(project) -> None:
    project("resilient/chat.py", SERVICE.format(name="Chat"))
    project("resilient/server.py", """
        import durably
        from .chat import svc
        app = durably.app(services=[svc])
    """)
    assert list(load_app("resilient/server.py").services) == ["Chat"]


def test_directory_names_that_are_not_module_names(project) -> None:
    project("v1.2/my-app/server.py", SERVICE.format(name="Dotted") + "\napp = durably.app(services=[svc])\n")
    assert list(load_app("v1.2/my-app/server.py").services) == ["Dotted"]


def test_file_of_a_package_outside_the_working_directory(project, tmp_path: Path, monkeypatch) -> None:
    project("elsewhere/shipping/__init__.py", "")
    project("elsewhere/shipping/rates.py", SERVICE.format(name="Rates"))
    path = project("elsewhere/shipping/server.py", """
        import durably
        from .rates import svc
        app = durably.app(services=[svc])
    """)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert list(load_app(str(path)).services) == ["Rates"]
    assert sys.modules["shipping.server"].__file__ == str(path)


def test_package_directory(project) -> None:
    project("shop/__init__.py", "")
    project("shop/orders.py", SERVICE.format(name="Orders"))
    project("shop/__main__.py", """
        import durably
        from shop.orders import svc
        app = durably.app(services=[svc])
        if __name__ == "__main__":
            raise SystemExit("ran as __main__")
    """)
    assert list(load_app("shop").services) == ["Orders"]
    assert list(load_app("shop/").services) == ["Orders"]


def test_package_with_the_app_in_init(project) -> None:
    project("billing/__init__.py", SERVICE.format(name="Billing") + "\napp = durably.app(services=[svc])\n")
    assert list(load_app("billing").services) == ["Billing"]


def test_module_reference_from_the_working_directory(project) -> None:
    project("plain_mod.py", SERVICE.format(name="Plain") + "\napplication = durably.app(services=[svc])\n")
    assert list(load_app("plain_mod").services) == ["Plain"]
    assert list(load_app("plain_mod:application").services) == ["Plain"]


def test_app_built_only_in_main_is_found_without_running_the_rest_of_main(project) -> None:
    project("greeter.py", SERVICE.format(name="G"))
    path = project("only_main.py", """
        import durably
        from greeter import svc

        def main():
            app = durably.app(services=[svc])
            raise SystemExit("main ran")

        if __name__ == "__main__":
            main()
    """)
    # durably.hosting.capture stops main() where durably.app() returns: the SystemExit after it never runs.
    assert list(load_app("only_main.py").services) == ["G"]
    assert path.is_file()


def test_entry_point_that_builds_no_app_says_what_to_write(project) -> None:
    path = project("main_without_app.py", """
        import durably

        def main():
            print("started without building an app: durably.app( is never called")

        if __name__ == "__main__":
            main()
    """)
    with pytest.raises(AppLoadError) as e:
        load_app("main_without_app.py")
    message = str(e.value)
    assert str(path) in message
    assert "app = restate.app(services=[...])` to the top level" in message


def test_missing_file_and_module(project) -> None:
    with pytest.raises(AppLoadError, match="no such file"):
        load_app("nope/app.py")
    with pytest.raises(AppLoadError, match="no module named 'nope_module'"):
        load_app("nope_module:app")


def test_syntax_error_is_one_line_with_file_and_line(project) -> None:
    path = project("broken.py", "import durably\nx = (\n")
    with pytest.raises(AppLoadError) as e:
        load_app("broken.py")
    assert str(e.value).startswith(f"{path}:2: SyntaxError") or str(e.value).startswith(f"{path}:3: SyntaxError")
    assert "\n" not in str(e.value)


# Issue 23: a module-level `app` of another kind, and scripts that start their own server.

NOT_DURABLY = """
class App:  # stands in for google.adk.apps.App
    def __init__(self, name):
        self.name = name
"""


def served(project) -> Path:
    return project("marker.txt", "").parent / "served"


def serve_writes(marker: Path) -> str:
    """A stand-in server: `serve(app)` writes the marker file, so a test sees whether it ran."""
    return f"def serve(app):\n    open({str(marker)!r}, 'w').close()\n"


def test_a_module_level_app_of_another_kind_does_not_stop_the_search(project) -> None:
    marker = served(project)
    project("app/__init__.py", "")
    project("app/chat_agent.py", SERVICE.format(name="Chat") + NOT_DURABLY + serve_writes(marker) + """
app = App("agents")

if __name__ == "__main__":
    app = durably.app(services=[svc])
    serve(app)
""")
    assert list(load_app("app/chat_agent.py").services) == ["Chat"]
    assert not marker.exists()
    # A durably app at module level under another name is found too.
    project("other.py", SERVICE.format(name="Other") + NOT_DURABLY
            + 'app = App("x")\ndurably_app = durably.app(services=[svc])\n')
    assert list(load_app("other.py").services) == ["Other"]


def test_a_module_level_app_of_another_kind_and_no_durably_app_is_named(project) -> None:
    project("lonely.py", SERVICE.format(name="L") + NOT_DURABLY + 'app = App("agents")\n')
    with pytest.raises(AppLoadError, match="lonely:app is a App, not a durably app, and lonely builds no durably app"):
        load_app("lonely")


def test_a_script_serving_at_its_top_level_is_stopped_where_it_builds_the_app(project) -> None:
    marker = served(project)
    project("mcp/agent.py", SERVICE.format(name="Mcp"))
    project("mcp/__main__.py", "import durably\nfrom agent import svc\n" + serve_writes(marker) + """
app = durably.app(services=[svc])
serve(app)
""")
    assert list(load_app("mcp").services) == ["Mcp"]
    assert not marker.exists()


def test_a_script_that_would_serve_before_building_an_app_is_not_run(project) -> None:
    marker = served(project)
    project("early.py", SERVICE.format(name="E") + serve_writes(marker) + "serve(None)\n")
    with pytest.raises(AppLoadError, match=r"importing .*early.py starts a server \(.*early.py:\d+\) before it builds "
                                           "a durably app"):
        load_app("early.py")
    assert not marker.exists()


def test_capture_never_runs_a_main_that_serves_without_building_an_app(project) -> None:
    marker = served(project)
    project("prebuilt.py", SERVICE.format(name="P") + f"""
class uvicorn:  # stands in for the uvicorn package
    @staticmethod
    def run(app, host="0.0.0.0", port=9080):
        open({str(marker)!r}, "w").close()


web_app = object()


def main():
    uvicorn.run(web_app)


if __name__ == "__main__":
    main()
""")
    with pytest.raises(AppLoadError, match=r"prebuilt.main\(\) starts a server \(.*prebuilt.py:\d+\) before it "
                                           "builds a durably app.*not running it"):
        load_app("prebuilt.py")
    assert not marker.exists()

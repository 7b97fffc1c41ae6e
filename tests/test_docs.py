"""The README and the documentation: every Python example runs as written, every public
name has its API entry, every link between pages points at a page that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import snnmetrics
import snnmetrics.functional

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [
    (page, index, code)
    for page in PAGES
    for index, code in enumerate(
        re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
    )
]


def test_there_are_examples_to_run():
    assert sum(page.name == "README.md" for page, _, _ in BLOCKS) >= 1
    assert len(BLOCKS) >= 15


@pytest.mark.parametrize(
    "page, index, code",
    BLOCKS,
    ids=[f"{page.relative_to(ROOT)}:{index}" for page, index, _ in BLOCKS],
)
def test_example_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    if 'if __name__ == "__main__":' in code:  # spawns processes: run it as a script
        script = tmp_path / "example.py"
        script.write_text(code, encoding="utf-8")
        run = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        return
    name = f"{page.relative_to(ROOT)} example {index}"
    exec(compile(code, name, "exec"), {"__name__": "__docs__"})


def _documented() -> set[str]:
    text = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "docs").rglob("*.md"))
    return set(re.findall(r"^::: ([\w.]+)$", text, flags=re.M))


@pytest.mark.parametrize(
    "module, page",
    [
        (snnmetrics, "docs/api/metrics.md or docs/api/registries.md"),
        (snnmetrics.functional, "docs/api/functional.md"),
    ],
)
def test_every_public_name_has_an_api_entry(module, page):
    documented = _documented()
    missing = [
        name
        for name in module.__all__
        if not name.startswith("__")
        and name != "functional"  # the module: its own page
        and f"{module.__name__}.{name}" not in documented
    ]
    assert not missing, f"add '::: {module.__name__}.<name>' for {missing} to {page}"


def test_links_between_pages_point_at_pages():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {
        str(path.relative_to(ROOT / "docs"))
        for path in (ROOT / "docs").rglob("*.md")
        if "_hooks" not in path.parts
    }
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.M))
    assert pages - listed == set(), "add these pages to the nav of mkdocs.yml"
    assert listed - pages == set(), "the nav lists pages that do not exist"


def test_docstring_rewrite_for_the_api_pages():
    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        pytest.importorskip("griffe", reason="the docs tools: pip install '.[docs]'")
        from docstrings import rewrite
    finally:
        sys.path.pop(0)
    text = (
        "Uses :class:`~snnmetrics.energy.MemoryModel` and :func:`snnmetrics.scalars`.\n\n"
        "    Example:\n        >>> 1 + 1\n        2"
    )
    assert rewrite(text) == (
        "Uses `MemoryModel` and `snnmetrics.scalars`.\n\n"
        "    Examples:\n        >>> 1 + 1\n        2"
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", readme)
    assert len(commands) == 2  # the main job, then the checks and tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == commands[1]
    assert commands[0].endswith("pip install . && snnmetrics profile")

"""Every Python block of README.md runs as written (script blocks in a fresh process)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    code = BLOCKS[index]
    if 'if __name__ == "__main__":' in code:  # spawns processes: run it as a script
        script = tmp_path / "block.py"
        script.write_text(code, encoding="utf-8")
        run = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        return
    exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "__readme__"})

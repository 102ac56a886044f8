"""The README's quickstart is what CI runs: `.ci/run` reads its two lines from README.md."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart():
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / ".ci" / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_has_the_two_quickstart_lines_ci_runs():
    line1, line2 = _quickstart().quickstart_lines((ROOT / "README.md").read_text())
    assert line1.endswith("algobench run --workload gpt2 --submission adan")
    assert "python3 -m pytest" in line2 and "npm" not in line2  # Debian's npm conflicts with the image's nodejs
    run = (ROOT / ".ci" / "run").read_text()
    assert ".ci/quickstart.py README.md" in run and 'bash -euo pipefail -c "${lines[0]}"' in run
    test_command = next(line.split("=", 1)[1].strip('"') for line in run.splitlines()
                        if line.startswith("TEST_COMMAND="))
    assert line2.endswith(f" && {test_command}") and "\n$TEST_COMMAND\n" in run  # CI runs line 2's own test command


def test_quickstart_reader_refuses_a_block_without_two_lines(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Quickstart\n\n```\nonly one line\n```\n")
    res = subprocess.run([sys.executable, str(ROOT / ".ci" / "quickstart.py"), str(readme)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "1 command lines, not 2" in res.stderr

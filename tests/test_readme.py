"""The README's Python example runs as written, and its commands are what CI runs."""
import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "largest difference: " in out
    diff = float(out.split("largest difference: ")[1].split()[0])
    assert diff < 1e-5
    assert "DARTS_V2: 3,349,342 parameters" in out
    grown = float(out.split("imported and grown, largest difference: ")[1].split()[0])
    assert grown < 1e-5
    assert (tmp_path / "grown.py").is_file() and (tmp_path / "my_start" / "graph.json").is_file()


def commands(script: str) -> list[str]:
    """The command lines of a shell script: no blank lines, no comments."""
    return [l.strip() for l in script.splitlines() if l.strip() and not l.strip().startswith("#")]


def test_ci_runs_the_readme_commands():
    install_and_run, install_and_test = (commands(b) for b in re.findall(r"```bash\n(.*?)```", README.read_text(),
                                                                         flags=re.S)[:2])
    # one line each: the same torch guard, then install nash and run it, or test it
    assert len(install_and_run) == 1 and len(install_and_test) == 1, (install_and_run, install_and_test)
    guard, _, rest = install_and_test[0].partition("; ")
    assert install_and_run[0].partition("; ")[0] == guard and "pip install torch==" in guard
    install, _, test = rest.partition(" && ")
    assert shlex.split(install) == ["pip", "install", "-e", ".[test]"]
    # a test file per core (pytest-xdist, from [test]): every test runs one torch thread
    assert shlex.split(test) == ["python", "-m", "pytest", "-q", "-n", "auto", "--dist", "loadfile"]
    # CI: the strict-mode and cd-to-the-repository prelude, then exactly README's test line
    ci = commands((README.parent / ".ci" / "run").read_text())
    assert ci == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', install_and_test[0]], ci

"""The README's Python example runs as written, and its commands are what CI runs."""
import re
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


def test_ci_runs_the_readme_commands():
    bash = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    install_and_test = [l for b in bash[:2] for l in b.splitlines() if l and not l.startswith("#")]
    ci = (README.parent / ".ci" / "run").read_text()
    assert any("pytest" in l for l in install_and_test)
    for line in install_and_test:
        if "pytest" in line:
            assert line in ci

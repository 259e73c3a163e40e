"""`webhook-audit report` from a built wheel, installed (not editable) and run outside the repository.

The notebooks are package data: a wheel that left them out, or code that found them through the
repository's layout, would pass every other test (they run from the editable checkout) and fail here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
REPORT_PAGES = ["01_load_and_replay", "02_match_and_404_rates", "03_wait_times_and_timeouts", "04_pairing_keys"]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _build_wheel(tmp_path: Path) -> Path:
    # Build from a copy of the sources: setuptools writes build/ and *.egg-info beside pyproject.toml,
    # and a stale build/lib in the repository would end up in the wheel.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "webhook_core", src / "webhook_core",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(src)]
    # No build isolation: the dev extra installs the setuptools that builds it, so nothing is fetched.
    built = _run([*pip_wheel, "--no-build-isolation"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("webhook_audit-*.whl")
    return wheel


@pytest.mark.slow
def test_report_runs_from_an_installed_wheel_outside_the_repository(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    site = tmp_path / "site"
    installed = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site),
                      str(wheel)], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not elsewhere.is_relative_to(ROOT)
    # PYTHONPATH comes before site-packages, and the venv's editable finder sits at the end of
    # sys.meta_path, so the wheel's copy wins; the import check below proves it rather than assume it.
    env = {**os.environ, "PYTHONPATH": str(site)}

    where = _run([sys.executable, "-c", "import webhook_core; print(webhook_core.__file__)"], cwd=elsewhere, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == site / "webhook_core" / "__init__.py"

    out = tmp_path / "out"
    report = _run([sys.executable, "-m", "webhook_core.cli", "report", str(SAMPLE), "--out", str(out)],
                  cwd=elsewhere, env=env, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert sorted(p.stem for p in out.glob("*.html")) == sorted([*REPORT_PAGES, "index"])
    index = (out / "index.html").read_text(encoding="utf-8")
    assert [name for name in REPORT_PAGES if f'href="{name}.html"' in index] == REPORT_PAGES
    # The notebooks that ran are the wheel's package data, not the repository's.
    for name in REPORT_PAGES:
        executed = json.loads((out / "executed" / f"{name}.ipynb").read_text(encoding="utf-8"))
        assert Path(executed["metadata"]["papermill"]["input_path"]).parent == site / "webhook_core" / "report" / \
            "notebooks"

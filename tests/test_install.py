"""The newcomer's path: the README's commands in a fresh venv, and where numba caches.

numba's on-disk cache once wrote ``.nbi``/``.nbc`` files into the installed
``site-packages/dnmf``; a later editable install then found that leftover
folder first as an empty namespace package, and ``import dnmf;
dnmf.open_corpus`` failed outside the repository (issue 14).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.mark.parametrize("numba_first", [False, True])
def test_numba_caches_in_the_user_cache_folder(tmp_path: Path, numba_first: bool) -> None:
    code = (
        ("import numba\n" if numba_first else "")
        + "import os, dnmf, numba.core.config as c\nprint(os.environ['NUMBA_CACHE_DIR'])\n"
        "print(c.CACHE_DIR)"
    )
    env_dir, config_dir = _python(code, _env(tmp_path)).splitlines()
    expected = str(tmp_path / "cache" / "dnmf" / "numba")
    assert env_dir == config_dir == expected


def test_a_users_numba_cache_dir_is_kept(tmp_path: Path) -> None:
    mine = str(tmp_path / "mine")
    code = (
        "import os, dnmf, numba.core.config as c\nprint(os.environ['NUMBA_CACHE_DIR'], c.CACHE_DIR)"
    )
    assert _python(code, _env(tmp_path, NUMBA_CACHE_DIR=mine)).split() == [mine, mine]


def test_workers_get_the_cache_dir(cluster_client: object) -> None:
    import dnmf  # noqa: F401  (sets it in this process, which the workers inherit)

    seen = cluster_client.run(lambda: os.environ.get("NUMBA_CACHE_DIR"))  # type: ignore[attr-defined]
    assert set(seen.values()) == {os.environ["NUMBA_CACHE_DIR"]}


def _copy_repo(dest: Path) -> Path:
    junk = shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".venv", "dnmf-demo", "*.zarr",
        ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis",
    )  # fmt: skip
    shutil.copytree(ROOT, dest, ignore=junk)
    return dest


def _sh(cmd: str, *, cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    out = subprocess.run(
        ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"{cmd!r} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_readme_commands_in_a_fresh_venv(tmp_path: Path) -> None:
    """``pip install . && dnmf demo``, then ``pip install -e ".[test]"``; the API imports."""
    repo = _copy_repo(tmp_path / "repo")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip_cache = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True
    ).stdout.strip()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NUMBA_CACHE_DIR", "DNMF_SCHEDULER")
    }
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # dnmf's numba cache goes here
    if pip_cache:
        env["PIP_CACHE_DIR"] = pip_cache  # the host's downloads and wheels, reused
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    # The README's quick start, word for word (in the clone's folder, as a user would).
    _sh("python3 -m pip install . && dnmf demo", cwd=repo, env=env)
    site = Path(
        _sh(
            "python3 -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'",
            cwd=tmp_path,
            env=env,
        ).strip()
    )
    in_package = [p.name for p in (site / "dnmf").rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert not in_package, f"numba cached into the installed package: {in_package}"
    cached = list((tmp_path / "cache" / "dnmf" / "numba").rglob("*.nbi"))
    assert cached, "numba cached nothing in the user cache folder"

    # The README's test command (the install; the suite itself is CI's business).
    _sh('python3 -m pip install -e ".[test]"', cwd=repo, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _sh(
        "python3 -c 'import dnmf; print(dnmf.__file__); print(dnmf.open_corpus.__name__)'",
        cwd=elsewhere,
        env=env,
    ).split()
    assert out == [str(repo / "dnmf" / "__init__.py"), "open_corpus"]

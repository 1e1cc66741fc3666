"""System and node packages the stack needs: apt (RabbitMQ, Prometheus, the tests'
Chromium and photographs) and `npm ci` in tools/ (PouchDB Server)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from .config import Paths
from .errors import StackError, say

APT_PACKAGES = ("rabbitmq-server",)
# For the test suite: the browser tests' Chromium, and real photographs (16 MB) for the
# image-processing golden tests.
APT_TEST_PACKAGES = ("chromium", "chromium-driver", "lomiri-wallpapers-16.04")
APT_OBSERVABILITY_PACKAGES = ("prometheus",)


def _sudo() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise StackError("installing system packages needs root (or sudo)")


def apt_missing(packages: Sequence[str]) -> list[str]:
    missing: list[str] = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def apt_install(packages: Sequence[str]) -> None:
    missing = apt_missing(packages)
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise StackError(f"missing packages {missing} and no apt-get to install them")
    say(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = _sudo()
    subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )


def npm_tools_current(paths: Paths) -> bool:
    """tools/node_modules matches tools/package-lock.json (as of the last `npm ci`)."""
    installed_lock = paths.tools_dir / "node_modules" / ".package-lock.json"
    lock = paths.tools_dir / "package-lock.json"
    if not paths.pouchdb_server.exists() or not installed_lock.exists():
        return False
    return installed_lock.stat().st_mtime >= lock.stat().st_mtime


def npm_install(paths: Paths) -> None:
    if npm_tools_current(paths):
        return
    if not shutil.which("npm"):
        apt_install(("nodejs", "npm"))
    say("npm ci --prefix tools (PouchDB Server)")
    subprocess.run(
        ["npm", "ci", "--prefix", str(paths.tools_dir), "--no-audit", "--no-fund"],
        check=True,
        cwd=paths.root,
    )


def ensure_deps(paths: Paths, test: bool = False, pip: bool = False) -> None:
    """Install what the local stack (and, with `test`, the test suite) needs."""
    if pip:  # only to bootstrap uv on a machine whose python3 has no pip
        apt_install(("python3-pip",))
        return
    apt_install(APT_PACKAGES + (APT_TEST_PACKAGES if test else ()))
    npm_install(paths)

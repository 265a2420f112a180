"""Real Debian 12 roots for applying the playbooks through the chroot connection.

debootstrap builds one minimal bookworm root, once, CACHED outside the repository
(~/.cache/swell/, or $SWELL_CACHE_DIR), because CI runs in a fresh clone on the same machine.
Each test session copies it fresh, so no run sees another's changes. Packages the roles
download are kept in a shared apt archive cache and put back into each fresh copy, so later
sessions install from disk.

A chroot has no service manager and shares the host's kernel and network: the copy gets a
policy-rc.d that stops package scripts from starting daemons, and the roles detect that systemd
is not running and leave services (and the firewall) alone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# ansible-core 2.19 modules need the full standard library (json, for one), which
# python3-minimal alone lacks: python3 is included too.
INCLUDE = "python3-minimal,python3"
POLICY_RC_D = "#!/bin/sh\n# swell test root: package scripts must not start daemons in a chroot.\nexit 101\n"


def cache_dir() -> Path:
    return Path(os.environ.get("SWELL_CACHE_DIR", Path.home() / ".cache" / "swell"))


def cached_root(timeout_s: int = 900) -> Path:
    """The pristine root, built with debootstrap on first use (a lock keeps builds single)."""
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    root = base / f"debian12-{SUITE}-minbase"
    with open(base / "debian12-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "etc" / "debian_version").exists():
            return root
        building = base / f"{root.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(building), MIRROR],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        # The package lists go into the cache too: the roles' apt cache_valid_time then skips
        # the download while they are fresh. The downloaded .debs are not needed any more.
        subprocess.run(["chroot", str(building), "apt-get", "update", "-qq"], check=True, timeout=300)
        subprocess.run(["chroot", str(building), "apt-get", "clean"], check=True, timeout=60)
        building.rename(root)
        return root


def archives_cache() -> Path:
    path = cache_dir() / "apt-archives"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fresh_root(dest: Path) -> Path:
    """A private copy of the cached root at `dest`, ready for the chroot connection."""
    subprocess.run(["cp", "-a", "--reflink=auto", str(cached_root()), str(dest)], check=True, timeout=300)
    policy = dest / "usr" / "sbin" / "policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    archives = dest / "var" / "cache" / "apt" / "archives"
    for deb in archives_cache().glob("*.deb"):
        shutil.copy2(deb, archives / deb.name)
    return dest


def keep_archives(root: Path) -> int:
    """Copy the .debs the roles downloaded into the shared cache; returns how many were new."""
    new = 0
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        target = archives_cache() / deb.name
        if not target.exists():
            tmp = target.with_suffix(".part")
            shutil.copy2(deb, tmp)
            tmp.rename(target)
            new += 1
    return new


def in_root(root: Path, *argv: str, timeout_s: int = 120) -> subprocess.CompletedProcess[str]:
    """Run a command inside the root (configuration checks such as `nginx -t`)."""
    return subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def can_chroot() -> str | None:
    """None when real applies can run here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "applying to a chroot needs root"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (make setup installs it)"
    return None

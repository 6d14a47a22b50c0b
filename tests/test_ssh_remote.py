"""A real SSH remote: Debian's sshd on 127.0.0.1 with a throwaway key, pushed to from one clone, pulled by another."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_MODEL

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ssh_server(tmp_path: Path):
    if not Path(SSHD).is_file():
        pytest.skip("openssh-server is not installed (.ci/run installs it with apt-get where it can)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (its privilege separation directory)")
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    port = free_port()
    config = keys / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {keys / 'host'}", f"PidFile {keys / 'sshd.pid'}",
        f"AuthorizedKeysFile {keys / 'authorized_keys'}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        "Subsystem sftp internal-sftp", "",
    ]))
    Path("/run/sshd").mkdir(exist_ok=True)
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
        assert server.poll() is None, server.stderr.read()
        assert time.monotonic() < deadline, "sshd did not start listening"
        time.sleep(0.1)
    # The client trusts this server's key and no other: known_hosts in a throwaway HOME.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    host_key = (keys / "host.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    yield {"port": port, "key": keys / "client", "home": home}
    server.terminate()
    server.wait(timeout=10)


def run(*args: str, cwd: Path, home: Path) -> str:
    env = dict(os.environ, HOME=str(home), DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e.x",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e.x",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout + result.stderr


def test_push_to_ssh_remote_and_pull_into_another_clone(ssh_server: dict, tmp_path: Path) -> None:
    home, first, second = ssh_server["home"], tmp_path / "first", tmp_path / "second"
    first.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=first, home=home)
    run("dvc", "init", "-q", cwd=first, home=home)
    shutil.copytree(TINY_MODEL, first / "model")
    run("dvc", "add", "-q", "model", cwd=first, home=home)
    url = f"ssh://root@127.0.0.1:{ssh_server['port']}{tmp_path / 'remote-store'}"
    run("dvc", "remote", "add", "-d", "team", url, cwd=first, home=home)
    run("dvc", "remote", "modify", "--local", "team", "keyfile", str(ssh_server["key"]), cwd=first, home=home)
    run("git", "add", "-A", cwd=first, home=home)
    run("git", "commit", "-q", "-m", "model on the team remote", cwd=first, home=home)
    assert "keyfile" not in (first / ".dvc" / "config").read_text(), "credentials stay out of git"
    run("dvc", "push", cwd=first, home=home)
    assert any((tmp_path / "remote-store").rglob("*")), "the remote holds the cache"

    run("git", "clone", "-q", str(first), str(second), cwd=tmp_path, home=home)
    run("dvc", "remote", "modify", "--local", "team", "keyfile", str(ssh_server["key"]), cwd=second, home=home)
    run("dvc", "pull", cwd=second, home=home)
    for path in TINY_MODEL.iterdir():
        assert (second / "model" / path.name).read_bytes() == path.read_bytes(), path.name

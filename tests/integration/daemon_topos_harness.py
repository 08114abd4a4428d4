"""Test-side harness of the cluster-mode tests: real `storm nimbus` and `storm
supervisor` processes on 127.0.0.1 with free ports, all state and logs under a
test's tmp_path, the `storm` CLI as a subprocess, and a nimbus client for
figures. `Daemons` is a context manager: on exit it kills every daemon it
started and every worker process whose command line names its directory,
and fails the test if a worker had to be killed that should have stopped.

(Named daemon_topos_* with the test topologies; it holds no topology.)"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from storm.daemon import NimbusClient
from storm.daemon._code import package_target

STORM = [sys.executable, "-m", "storm.cli"]
WORKER_MODULE = "storm._worker_main"
HERE = Path(__file__).resolve().parent
NUMBERS = f"{HERE / 'daemon_topos_cluster.py'}:Numbers"

# Fast heartbeats and scans: tests wait on them.
FAST = {
    "nimbus.monitor.freq.secs": 0.2,
    "nimbus.supervisor.timeout.secs": 6.0,
    "nimbus.client.timeout.secs": 20.0,
    "supervisor.monitor.frequency.secs": 0.2,
    "supervisor.heartbeat.frequency.secs": 0.3,
    "supervisor.worker.timeout.secs": 10.0,
    "storm.worker.shutdown.timeout.secs": 5.0,
}


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct TCP ports free right now (held open together while picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(condition: Callable[[], Any], message: str, timeout: float = 30.0,
               diagnostics: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise AssertionError(f"{message}: not within {timeout:g}s{extra}")
        time.sleep(0.1)


def processes_mentioning(marker: str, module: str = WORKER_MODULE) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        line = " ".join(p.info["cmdline"] or [])
        if module in line and marker in line:
            found.append(p)
    return found


class Daemons:
    """nimbus and supervisors of one test, all under `base`."""

    def __init__(self, base: Path, conf: dict[str, Any] | None = None, netns: str | None = None) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.nimbus_port = free_ports(1)[0]
        self.conf: dict[str, Any] = {
            **FAST,
            "nimbus.port": self.nimbus_port,
            "nimbus.seeds": ["127.0.0.1"],
            "storm.cluster.state.sqlite": str(base / "state.sqlite"),
            **(conf or {}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.supervisor_dirs: dict[str, Path] = {}
        self.record_dir = base / "records"
        self.record_dir.mkdir(exist_ok=True)
        self._client: NimbusClient | None = None

    # -- config ----------------------------------------------------------------------
    def args(self, extra: dict[str, Any] | None = None) -> list[str]:
        out = []
        for k, v in {**self.conf, **(extra or {})}.items():
            if isinstance(v, list):
                v = "[" + ", ".join(str(x) for x in v) + "]"
            out += ["-c", f"{k}={v}"]
        return out

    @property
    def client(self) -> NimbusClient:
        if self._client is None:
            self._client = NimbusClient.from_conf({**self.conf})
        return self._client

    # -- daemons -----------------------------------------------------------------------
    def _start(self, key: str, argv: list[str], env: dict[str, str] | None = None,
               prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        log = self.base / f"{key}.log"
        self.logs[key] = log
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.pop("STORM_CONF_FILE", None)
        full_env["HOME"] = str(self.base)  # no ~/.storm/storm.yaml of the machine leaks in
        with open(log, "ab") as out:
            proc = subprocess.Popen([*prefix, *STORM, *argv], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=full_env, cwd=str(self.base))
        self.procs[key] = proc
        return proc

    def start_nimbus(self, prefix: Sequence[str] = (), extra: dict[str, Any] | None = None) -> None:
        self._start("nimbus", ["nimbus", *self.args({"storm.local.dir": str(self.base / "nimbus"), **(extra or {})})],
                    prefix=prefix)
        wait_until(self._nimbus_answers, "nimbus answers", 30, self.diagnostics)

    def _nimbus_answers(self) -> bool:
        proc = self.procs["nimbus"]
        if proc.poll() is not None:
            raise AssertionError(f"nimbus exited with {proc.returncode}\n{self.diagnostics()}")
        try:
            self._client = None
            self.client.call("ping")
            return True
        except Exception:
            return False

    def start_supervisor(self, key: str, slots: int = 2, env: dict[str, str] | None = None,
                         prefix: Sequence[str] = (), extra: dict[str, Any] | None = None,
                         wait: bool = True) -> subprocess.Popen[bytes]:
        """A supervisor with its own local dir (so its own id, code, logs)."""
        local = self.supervisor_dirs.setdefault(key, self.base / key)
        conf = {"storm.local.dir": str(local), **(extra or {})}
        if "supervisor.slots.ports" not in conf:
            conf["supervisor.slots.ports"] = free_ports(slots)
        proc = self._start(key, ["supervisor", *self.args(conf)], env=env, prefix=prefix)
        if wait:
            wait_until(lambda: self._supervisor_alive(key, proc.pid), f"supervisor {key} registers", 30,
                       self.diagnostics)
        return proc

    def _supervisor_alive(self, key: str, pid: int) -> bool:
        if self.procs[key].poll() is not None:
            raise AssertionError(f"supervisor {key} exited with {self.procs[key].returncode}\n{self.diagnostics()}")
        sups = self.client.call("supervisors")["supervisors"]
        return any(s["pid"] == pid and s["alive"] for s in sups)

    def stop(self, key: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs[key]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # -- the CLI -----------------------------------------------------------------------
    def storm(self, *argv: str, conf: bool = True, timeout: float = 60.0,
              prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop("STORM_CONF_FILE", None)
        env["HOME"] = str(self.base)
        env["COLUMNS"] = "200"
        cmd = [*prefix, *STORM, *argv, *(self.args() if conf else [])]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(self.base))

    # -- topologies ----------------------------------------------------------------------
    def submit(self, target: str = NUMBERS, **overrides: Any) -> dict[str, Any]:
        """Submit through the client (what `storm submit` does, without a process)."""
        conf = {"itest.dir": str(self.record_dir), **overrides}
        pkg, spec = package_target(target, conf)
        return self.client.call("submit", name=spec.name, target=pkg.target, archive=pkg.archive,
                                sha256=pkg.sha256, overrides=conf)

    def info(self, name: str) -> dict[str, Any]:
        return self.client.call("info", name=name)

    def running_workers(self, name: str) -> list[dict[str, Any]]:
        try:
            info = self.info(name)
        except Exception:
            return []
        return [w for w in info["workers"] if w["status"] == "running"]

    def wait_running(self, name: str, workers: int, timeout: float = 40.0) -> list[dict[str, Any]]:
        return wait_until(lambda: (lambda ws: ws if len(ws) == workers else None)(self.running_workers(name)),
                          f"{workers} worker(s) of {name} running", timeout, self.diagnostics)

    def worker_processes(self) -> list[psutil.Process]:
        return processes_mentioning(str(self.base))

    # -- cleanup and diagnostics ------------------------------------------------------------
    def diagnostics(self) -> str:
        lines = []
        for key, log in self.logs.items():
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-12:]
                lines.append(f"--- {key}.log (pid {self.procs[key].pid}, exit {self.procs[key].poll()})")
                lines.extend(tail)
        for d in self.supervisor_dirs.values():
            for p in sorted((d / "logs").glob("*/worker-*.*")):
                tail = p.read_text(errors="replace").splitlines()[-8:]
                if tail:
                    lines.append(f"--- {p.relative_to(self.base)}")
                    lines.extend(tail)
        return "\n".join(lines)

    def close(self) -> list[str]:
        """Stop the supervisors (they stop their workers), then nimbus; kill
        whatever is left. Returns what had to be killed."""
        for key in [k for k in self.procs if k != "nimbus"]:
            self.stop(key)
        if "nimbus" in self.procs:
            self.stop("nimbus")
        left = self.worker_processes()
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            psutil.wait_procs(left, timeout=0.2)
            left = self.worker_processes()
        problems = [f"pid {p.pid}: {' '.join(p.cmdline())[:160]}" for p in left]
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=5)
        # A supervisor killed with SIGKILL leaves its socket directory (named by its id).
        for d in self.supervisor_dirs.values():
            id_file = d / "supervisor" / "id"
            if id_file.exists():
                shutil.rmtree(Path("/tmp") / f"storm-sup-{id_file.read_text().strip()[:12]}", ignore_errors=True)
        return problems

    def __enter__(self) -> Daemons:
        return self

    def __exit__(self, *exc: object) -> None:
        problems = self.close()
        if problems and exc[0] is None:
            raise AssertionError("worker processes left after the supervisors stopped (killed now):\n  "
                                 + "\n  ".join(problems))


# -- ZooKeeper (Debian's `zookeeper` package) -------------------------------------------------
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
ZK_JAR = Path("/usr/share/java/zookeeper.jar")


def zk_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a ZooKeeper server answers 'ruok' with 'imok' at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"ruok")
            s.settimeout(timeout)
            return s.recv(16) == b"imok"
    except OSError:
        return False


def start_zookeeper(directory: Path, host: str, port: int,
                    prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """A standalone ZooKeeper server on host:port with its data in `directory`;
    returns once it answers (the caller stops the process)."""
    if not ZK_JAR.exists():
        raise FileNotFoundError(f"{ZK_JAR} is missing: apt-get install zookeeper")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    cfg = directory / "zoo.cfg"
    cfg.write_text(
        f"tickTime=500\ndataDir={directory / 'data'}\nclientPort={port}\nclientPortAddress={host}\n"
        "admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nmaxSessionTimeout=60000\n"
    )
    with open(directory / "zookeeper.log", "ab") as out:
        proc = subprocess.Popen(
            [*prefix, "java", "-Xmx256m", "-cp", ZK_CLASSPATH, f"-Dzookeeper.log.dir={directory}",
             "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while not zk_ok(host, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            log = (directory / "zookeeper.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"ZooKeeper did not start on {host}:{port}:\n{log}")
        time.sleep(0.1)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

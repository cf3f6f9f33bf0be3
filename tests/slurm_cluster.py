"""A throwaway single-node Slurm cluster for tests, started without systemd.

Usage (plain Python, no pytest needed)::

    from tests.slurm_cluster import local_slurm, slurm_job_states

    with local_slurm(tmpdir) as env:
        subprocess.run(["sbatch", f"--output={tmpdir}/%j.out", "--wrap", "true"],
                       env=env, check=True)
        ...
        print(slurm_job_states(env))

What ``local_slurm`` does, all under ``tmpdir`` (plus a short munge directory
under the system temp dir, because munged must be able to reach it as the
``munge`` user and unix-socket paths are limited to ~100 characters):

* writes a fresh munge key and starts ``munged -F`` as the ``munge`` user with
  its own socket, pid, log and seed files; slurm.conf points Slurm to that
  socket via ``AuthInfo=socket=...`` (so a system munged, if any, is not used);
* writes ``slurm.conf`` for one node (``NodeName=$(hostname -s)``,
  ``NodeAddr=127.0.0.1``, CPUs and RealMemory of this machine, no GPUs),
  state/spool/log/pid files in ``tmpdir``, free TCP ports, no accounting,
  ``MinJobAge`` of 10 minutes so ``squeue`` still lists finished jobs;
* starts ``slurmctld -D -c -f slurm.conf`` and ``slurmd -D -f slurm.conf``
  and points ``/run/slurm/conf`` (the directory where a configless slurmd
  would publish its configuration, and where Slurm commands look when
  ``SLURM_CONF`` is unset and ``/etc/slurm/slurm.conf`` does not exist) to the
  directory of that slurm.conf.  That matters because
  snakemake-executor-plugin-slurm-jobstep strips all ``SLURM_*`` variables
  (``SLURM_CONF`` included) before it calls ``srun`` inside the batch job;
* waits (bounded) until ``sinfo`` reports the node ``idle``; on failure it
  raises :class:`SlurmClusterError` with the tails of all daemon logs;
* yields an environment dict (``SLURM_CONF`` set, inherited ``SLURM_*``/
  ``SBATCH_*``/``SQUEUE_*``... variables removed) for ``subprocess`` calls;
* on exit cancels all jobs, stops slurmd, slurmctld and munged by PID, kills
  any leftover job process (job scripts carry a unique marker variable in
  their environment, ``slurmstepd`` runs in the cluster directory), and
  removes the ``/run/slurm/conf`` link; :func:`leftover_pids` checks that
  nothing is left.

Requirements: root (Slurm daemons and the switch to the munge user need it),
the Debian packages ``slurmctld slurmd slurm-client munge`` (see
``.ci/install_slurm.sh``), and no system-wide ``/etc/slurm/slurm.conf``
(``srun`` would prefer it over ``/run/slurm/conf``).  Only one
``local_slurm`` per machine at a time (they would share ``/run/slurm/conf``;
a second one raises :class:`SlurmClusterError`, so no ``pytest -n``).
:func:`missing_requirements` returns why the cluster cannot be started here.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = [
    "SNAKEMAKE_FLAGS",
    "SlurmClusterError",
    "leftover_pids",
    "local_slurm",
    "missing_requirements",
    "slurm_jobs",
    "slurm_job_states",
    "wait_for_jobs",
]

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "srun")
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
CONFIGLESS_LINK = Path("/run/slurm/conf")
MARKER_VAR = "CONVDP_LOCAL_SLURM_ID"
# How long squeue/scontrol keep finished jobs. The slurm executor plugin only
# uses squeue for status queries if MinJobAge >= 3 * its initial status check
# interval (40 s by default), otherwise it silently falls back to sacct.
MIN_JOB_AGE_S = 600
# Environment variables that would change what the Slurm client commands do
# (SQUEUE_FORMAT, SBATCH_PARTITION, a surrounding job's SLURM_JOB_ID, ...).
_SLURM_ENV_PREFIXES = (
    "SLURM_",
    "SBATCH_",
    "SALLOC_",
    "SRUN_",
    "SQUEUE_",
    "SINFO_",
    "SCONTROL_",
    "SACCT_",
)
# Extra `snakemake --executor slurm` flags for this cluster.  It has no
# slurmdbd, so `sacct` (the plugin's default status query whenever the sacct
# binary exists) fails and Snakemake would wait forever: ask squeue instead
# (finished jobs stay visible for MinJobAge).  And check status after 2 s
# instead of the default 40 s (the plugin falls back to sacct if
# MinJobAge < 3 x this value).
SNAKEMAKE_FLAGS = (
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
)
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


class SlurmClusterError(RuntimeError):
    """The local Slurm cluster could not be started or queried."""


# --------------------------------------------------------------------------
# requirements
# --------------------------------------------------------------------------
def _which(name: str) -> str | None:
    """shutil.which, also looking in the sbin directories (daemons live in
    /usr/sbin, which is not on every PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def missing_requirements() -> str | None:
    """Return a human-readable reason why :func:`local_slurm` cannot work
    on this machine, or ``None`` if everything needed is there."""
    missing = [b for b in (*DAEMONS, *CLIENTS) if _which(b) is None]
    if missing:
        return (
            f"Slurm/munge not installed (missing: {', '.join(missing)}); "
            "run .ci/install_slurm.sh as root"
        )
    if os.geteuid() != 0:
        return "starting slurmd/slurmctld/munged needs root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (install the munge package)"
    if SYSTEM_SLURM_CONF.exists():
        return (
            f"{SYSTEM_SLURM_CONF} exists: a real Slurm is configured on this "
            "machine; srun inside test jobs would use it instead of the test cluster"
        )
    return None


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _machine_resources() -> tuple[int, int]:
    """CPUs and RealMemory (MiB) of this machine, as slurmd sees them."""
    cpus = mem = None
    try:
        out = subprocess.run(
            [_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30
        ).stdout
        if m := re.search(r"\bCPUs=(\d+)", out):
            cpus = int(m.group(1))
        if m := re.search(r"\bRealMemory=(\d+)", out):
            mem = int(m.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    if not cpus:
        cpus = os.cpu_count() or 1
    if not mem:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
                    break
    return cpus, max(int(mem or 1024), 1)


def _tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"    <cannot read {path}: {e}>"
    return "\n".join("    " + line for line in lines[-n:]) or "    <empty>"


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Copy of ``base`` (default: os.environ) without Slurm client settings."""
    base = os.environ if base is None else base
    return {k: v for k, v in base.items() if not k.startswith(_SLURM_ENV_PREFIXES)}


def _our_pids(marker: str, dirs: list[Path]) -> set[int]:
    """PIDs of processes (other than this one) of the cluster: whose environment contains
    MARKER_VAR=marker (job processes, sbatch --export=ALL of our env), or whose working
    directory is in one of ``dirs`` (slurmd starts slurmstepd in its own cwd, with a
    scrubbed environment)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    prefixes = [str(d.resolve()) for d in dirs]
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            if any(cwd == p or cwd.startswith(p + "/") for p in prefixes):
                found.add(int(entry))
                continue
        except OSError:
            pass
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.add(int(entry))
        except OSError:
            continue
    return found


def leftover_pids(env: Mapping[str, str]) -> list[int]:
    """Processes of the cluster described by ``env`` (as yielded by
    :func:`local_slurm`) that are still alive; empty after a clean exit."""
    root = Path(env["SLURM_CONF"]).parent.parent
    pids = _our_pids(env[MARKER_VAR], [root])
    return sorted(p for p in pids if _alive(p))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_pids(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds, each PID."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _check_conf_link_free() -> None:
    """Refuse to run next to another Slurm (or another test cluster) that
    uses /run/slurm/conf; a dangling link of a crashed run is fine."""
    if CONFIGLESS_LINK.is_symlink() and not CONFIGLESS_LINK.exists():
        return
    if CONFIGLESS_LINK.exists():
        raise SlurmClusterError(
            f"{CONFIGLESS_LINK} is in use (-> {os.path.realpath(CONFIGLESS_LINK)}): "
            "another slurmd or another local_slurm() runs on this machine"
        )


def _claim_conf_link(conf_dir: Path) -> None:
    _check_conf_link_free()
    if CONFIGLESS_LINK.is_symlink():
        CONFIGLESS_LINK.unlink()  # dangling link of an earlier, crashed run
    CONFIGLESS_LINK.parent.mkdir(parents=True, exist_ok=True)
    CONFIGLESS_LINK.symlink_to(conf_dir, target_is_directory=True)


# --------------------------------------------------------------------------
# config files
# --------------------------------------------------------------------------
def _slurm_conf(
    *,
    root: Path,
    spool: Path,
    host: str,
    cpus: int,
    mem_mb: int,
    ctld_port: int,
    slurmd_port: int,
    munge_socket: Path,
    cluster_name: str,
) -> str:
    return f"""\
# Generated by tests/slurm_cluster.py for a throwaway single-node test cluster.
ClusterName={cluster_name}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
MailProg=/bin/true
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={spool}
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no systemd: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# jobs without --mem get this much per CPU (not the whole node)
DefMemPerCPU={max(100, min(1024, mem_mb // max(cpus, 1)))}
# keep finished jobs visible to squeue/scontrol (no slurmdbd here)
MinJobAge={MIN_JOB_AGE_S}
ReturnToService=2
# trust the CPUs/RealMemory below even if slurmd counts differently
SlurmdParameters=config_overrides
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
Waittime=0
NodeName={host} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


# --------------------------------------------------------------------------
# the context manager
# --------------------------------------------------------------------------
@contextlib.contextmanager
def local_slurm(
    tmpdir: str | os.PathLike[str],
    *,
    start_timeout: float = 60.0,
) -> Iterator[dict[str, str]]:
    """Run a single-node Slurm for the duration of the ``with`` block.

    Yields the environment (a dict) to pass to ``subprocess`` calls so that
    ``sbatch``/``squeue``/``scontrol``/``sinfo`` and ``snakemake --executor
    slurm`` talk to this cluster.  Everything started is stopped on exit,
    also when the block raises.
    """
    reason = missing_requirements()
    if reason:
        raise SlurmClusterError(reason)
    _check_conf_link_free()

    root = Path(tmpdir).resolve() / f"slurm-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    for sub in ("state", "spool", "run", "log", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    host = socket.gethostname().split(".")[0]
    cpus, mem_mb = _machine_resources()
    ctld_port, slurmd_port = _free_ports(2)
    conf = root / "etc" / "slurm.conf"

    procs: dict[str, subprocess.Popen] = {}
    log_files = []
    munge_dir = Path(tempfile.mkdtemp(prefix="convdp-munge-"))
    # slurmd's job sockets live in the spool folder and a Unix socket path has at most 108
    # bytes: under pytest's tmp_path (…/pytest-139/test_…/cluster/slurm-…/spool/vm_38.4294967291)
    # a two-digit job id went over, and the jobs were held with "launch failed"
    spool = Path(tempfile.mkdtemp(prefix="convdp-spool-"))
    munge_socket = munge_dir / "munge.socket"
    daemon_env = clean_env()
    daemon_env[MARKER_VAR] = marker
    created_link = False
    try:
        # ---- munge -----------------------------------------------------
        mu = pwd.getpwnam("munge")
        mg = grp.getgrgid(mu.pw_gid)
        os.chown(munge_dir, mu.pw_uid, mg.gr_gid)
        os.chmod(munge_dir, 0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chown(key, mu.pw_uid, mg.gr_gid)
        os.chmod(key, 0o400)
        munged_out = open(root / "log" / "munged.stderr", "wb")
        log_files.append(munged_out)
        procs["munged"] = subprocess.Popen(
            [
                _which("munged"),
                "--foreground",
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge_dir / 'munged.pid'}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            user=mu.pw_uid,
            group=mg.gr_gid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=munged_out,
            stderr=subprocess.STDOUT,
            env=daemon_env,
            cwd=munge_dir,
        )

        def logs() -> str:
            parts = []
            for name, path in (
                ("munged", munge_dir / "munged.log"),
                ("munged stderr", root / "log" / "munged.stderr"),
                ("slurmctld", root / "log" / "slurmctld.log"),
                ("slurmctld stderr", root / "log" / "slurmctld.stderr"),
                ("slurmd", root / "log" / "slurmd.log"),
                ("slurmd stderr", root / "log" / "slurmd.stderr"),
            ):
                if path.exists():
                    parts.append(f"--- {name} ({path}):\n{_tail(path)}")
            return "\n".join(parts)

        deadline = time.monotonic() + start_timeout
        while not munge_socket.exists():
            if procs["munged"].poll() is not None or time.monotonic() > deadline:
                raise SlurmClusterError(f"munged did not start\n{logs()}")
            time.sleep(0.1)

        # ---- slurm.conf + daemons -------------------------------------
        conf.write_text(
            _slurm_conf(
                root=root,
                spool=spool,
                host=host,
                cpus=cpus,
                mem_mb=mem_mb,
                ctld_port=ctld_port,
                slurmd_port=slurmd_port,
                munge_socket=munge_socket,
                cluster_name="convdptest",
            )
        )
        env = dict(daemon_env)
        env["SLURM_CONF"] = str(conf)

        ctld_out = open(root / "log" / "slurmctld.stderr", "wb")
        log_files.append(ctld_out)
        procs["slurmctld"] = subprocess.Popen(
            [_which("slurmctld"), "-D", "-c", "-i", "-f", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=ctld_out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
        # wait until slurmctld answers, then start slurmd
        while True:
            r = subprocess.run(
                ["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=30
            )
            if "UP" in r.stdout:
                break
            if procs["slurmctld"].poll() is not None or time.monotonic() > deadline:
                raise SlurmClusterError(
                    f"slurmctld did not come up ({r.stdout.strip()} {r.stderr.strip()})\n{logs()}"
                )
            time.sleep(0.3)

        # srun inside a batch job runs without SLURM_CONF (see module doc) and
        # then reads /run/slurm/conf/slurm.conf, the place where a configless
        # slurmd publishes its configuration. Point that at our conf directory.
        # (A real configless slurmd cannot be used: it would need the munge
        # socket at the default path before it has fetched AuthInfo.)
        _claim_conf_link(conf.parent)
        created_link = True
        slurmd_out = open(root / "log" / "slurmd.stderr", "wb")
        log_files.append(slurmd_out)
        procs["slurmd"] = subprocess.Popen(
            [_which("slurmd"), "-D", "-N", host, "-f", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=slurmd_out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )

        # ---- wait for an idle node ------------------------------------
        state = ""
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    raise SlurmClusterError(f"{name} exited with code {p.returncode}\n{logs()}")
            r = subprocess.run(
                ["sinfo", "--noheader", "--Node", "--format=%N %T"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            state = r.stdout.strip()
            if r.returncode == 0 and state.split()[-1:] == ["idle"]:
                break
            if time.monotonic() > deadline:
                reasons = subprocess.run(
                    ["sinfo", "-R"], env=env, capture_output=True, text=True, timeout=30
                ).stdout
                raise SlurmClusterError(
                    f"node not idle after {start_timeout:.0f}s (sinfo: {state!r} "
                    f"{r.stderr.strip()}; sinfo -R: {reasons.strip()!r})\n{logs()}"
                )
            time.sleep(0.3)

        yield env
    finally:
        _shutdown(procs, root, [root, munge_dir], marker, conf, created_link)
        for fh in log_files:
            fh.close()
        shutil.rmtree(munge_dir, ignore_errors=True)
        shutil.rmtree(spool, ignore_errors=True)


def _shutdown(
    procs: dict[str, subprocess.Popen],
    root: Path,
    cwd_dirs: list[Path],
    marker: str,
    conf: Path,
    created_link: bool,
) -> None:
    env = clean_env()
    env["SLURM_CONF"] = str(conf)
    # 1. cancel jobs while the controller is still up, give them a moment
    if "slurmctld" in procs and procs["slurmctld"].poll() is None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["scancel", "--user", pwd.getpwuid(os.geteuid()).pw_name],
                env=env,
                capture_output=True,
                timeout=15,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                r = subprocess.run(
                    ["squeue", "--noheader", "--states=RUNNING,COMPLETING,PENDING", "--format=%i"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=15,
                )
                if r.returncode != 0 or not r.stdout.strip():
                    break
                time.sleep(0.3)
    # 2. daemons, in reverse start order, by PID
    for name in ("slurmd", "slurmctld", "munged"):
        if name in procs:
            _stop_process(procs[name])
    # 3. leftovers: job processes carry the marker variable (sbatch
    #    --export=ALL of our env), slurmstepd runs in slurmd's cwd (root)
    leftovers = _our_pids(marker, cwd_dirs)
    _kill_pids(sorted(p for p in leftovers if _alive(p)), timeout=5)
    # 4. the configless link, if it is ours
    if created_link and CONFIGLESS_LINK.is_symlink():
        target = os.readlink(CONFIGLESS_LINK)
        if str(root) in target:
            with contextlib.suppress(OSError):
                CONFIGLESS_LINK.unlink()


# --------------------------------------------------------------------------
# querying jobs
# --------------------------------------------------------------------------
def slurm_jobs(env: Mapping[str, str]) -> list[dict[str, str]]:
    """All jobs the controller still knows (finished ones for MinJobAge),
    as dicts with keys jobid, name, comment, state, exit_code, reason."""
    fields = ("jobid", "name", "comment", "state", "exit_code", "reason")
    # %i id, %j name, %k comment, %T long state, %r reason; exit code via scontrol
    r = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%i\x1f%j\x1f%k\x1f%T\x1f%r"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode != 0:
        raise SlurmClusterError(f"squeue failed: {r.stderr.strip()}")
    exit_codes = _exit_codes(env)
    jobs = []
    for line in r.stdout.splitlines():
        parts = line.split("\x1f")
        if len(parts) != 5:
            continue
        jobid, name, comment, state, reason = (p.strip() for p in parts)
        if comment in ("(null)", "N/A"):
            comment = ""
        jobs.append(
            dict(
                zip(
                    fields,
                    (jobid, name, comment, state, exit_codes.get(jobid, ""), reason),
                    strict=True,
                )
            )
        )
    jobs.sort(key=lambda j: _jobid_key(j["jobid"]))
    return jobs


def _jobid_key(jobid: str) -> tuple[int, int]:
    main, _, task = jobid.partition("_")
    return (int(main) if main.isdigit() else -1, int(task) if task.isdigit() else -1)


def _exit_codes(env: Mapping[str, str]) -> dict[str, str]:
    r = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    codes = {}
    for line in r.stdout.splitlines():
        jm = re.search(r"\bJobId=(\d+)", line)
        em = re.search(r"\bExitCode=(\S+)", line)
        if jm and em:
            codes[jm.group(1)] = em.group(1)
    return codes


def slurm_job_states(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``{key: (jobid, state)}`` for every job the controller still knows.

    ``key`` is the job's comment if it has one, else its name.  Snakemake's
    slurm executor names every job after the run's UUID and puts
    ``rule_<rule>`` or ``rule_<rule>_wildcards_<values>`` into the comment, so
    for Snakemake jobs the key identifies rule and wildcards.  If a key occurs
    more than once (a retried job), the latest job id wins; use
    :func:`slurm_jobs` to see them all.
    """
    states: dict[str, tuple[str, str]] = {}
    for job in slurm_jobs(env):  # sorted by job id, so later ones overwrite
        states[job["comment"] or job["name"]] = (job["jobid"], job["state"])
    return states


def wait_for_jobs(env: Mapping[str, str], timeout: float = 120.0) -> list[dict[str, str]]:
    """Wait until no job is pending/running; return :func:`slurm_jobs`."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = slurm_jobs(env)
        if all(j["state"] in FINISHED_STATES for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            raise SlurmClusterError(f"jobs still active after {timeout:.0f}s: {jobs}")
        time.sleep(0.5)


if __name__ == "__main__":  # manual smoke test: python tests/slurm_cluster.py
    import sys

    why = missing_requirements()
    if why:
        sys.exit(f"cannot start a local Slurm: {why}")
    with tempfile.TemporaryDirectory() as d, local_slurm(d) as e:
        print(subprocess.run(["sinfo"], env=e, capture_output=True, text=True).stdout)
        out = subprocess.run(
            # srun without SLURM_CONF, as the snakemake jobstep plugin calls it
            [
                "sbatch",
                "--parsable",
                "--job-name=smoke",
                "--comment=smoke-comment",
                f"--output={d}/smoke-%j.out",
                "--wrap",
                "env -u SLURM_CONF srun hostname",
            ],
            env=e,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        print("submitted", out.strip())
        print(wait_for_jobs(e, timeout=60))
        print(slurm_job_states(e))
        print(Path(d, f"smoke-{out.strip()}.out").read_text())

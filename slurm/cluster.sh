#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying `--executor slurm` and for the tests.
# Debian/Ubuntu, as root. Usage: slurm/cluster.sh start | stop | status
#
#   ALGOBENCH_SLURM_DIR  state and log folder            (default ${TMPDIR:-/tmp}/algobench-slurm)
#   ALGOBENCH_SLURM_DBD  1: slurmdbd + MariaDB (sacct works; submitit polls sacct, so keep it)
#   ALGOBENCH_SLURM_INSTALL  1: apt-get install the packages when missing (default 1)
#   ALGOBENCH_SLURM_CPUS  declare this many CPUs on the node (default: the real count); the tests
#                         declare 6 on a 2-core machine so that six 1-CPU tasks, mostly asleep, run at once
#
# Snags handled here: the host name must resolve; node facts come from `slurmd -C`; /run/munge
# must belong to munge; without slurmdbd submitit's job states stay UNKNOWN (and a cancelled
# job's result() blocks); a requeued job waits `cred_expire` (default 120 s) before it may start
# again, so this test cluster sets it to 5 s and runs the scheduler every 2 s.
set -uo pipefail
TMP=${TMPDIR:-/tmp}
BASE=${ALGOBENCH_SLURM_DIR:-$TMP/algobench-slurm}
DBD=${ALGOBENCH_SLURM_DBD:-1}
INSTALL=${ALGOBENCH_SLURM_INSTALL:-1}
CPUS=${ALGOBENCH_SLURM_CPUS:-}
CONF=/etc/slurm/slurm.conf
PKGS="munge slurmctld slurmd slurm-client"

log() { echo "[slurm $(date +%T)] $*"; }
die() {
  echo "[slurm] ERROR: $*" >&2
  for f in "$BASE"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; } >&2; done
  exit 1
}
waitfor() {  # waitfor SECONDS CMD...: retry CMD every 0.25 s
  local n=$(( $1 * 4 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  return 1
}
alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
stop_pid() {  # stop_pid PIDFILE: TERM, then KILL after 10 s
  local p; p=$(cat "$1" 2>/dev/null) || return 0
  alive "$p" && kill "$p" 2>/dev/null
  for _ in $(seq 40); do alive "$p" || return 0; sleep 0.25; done
  kill -9 "$p" 2>/dev/null; return 0
}
fact() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }

install_packages() {
  local pkgs=$PKGS
  [ "$DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  dpkg -s $pkgs >/dev/null 2>&1 && return 0
  [ "$INSTALL" = 1 ] || die "missing packages; run: apt-get install $pkgs"
  log "installing $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $pkgs >"$BASE/apt.log" 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $pkgs >>"$BASE/apt.log" 2>&1; } \
    || die "apt-get install $pkgs failed (see $BASE/apt.log)"
}

start_munge() {
  install -d -o munge -g munge -m 0755 /run/munge
  [ -s /etc/munge/munge.key ] || mungekey -c -k /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force || die "munged failed"
    waitfor 10 sh -c 'munge -n | unmunge' || die "munge is not answering"
  fi
}

start_accounting() {  # MariaDB + slurmdbd, so that sacct (and submitit) see job states
  install -d -o mysql -g mysql /run/mysqld
  if ! mariadb-admin ping >/dev/null 2>&1; then
    setsid mariadbd --user=mysql --bind-address=127.0.0.1 >"$BASE/mariadb.log" 2>&1 </dev/null &
    waitfor 60 mariadb-admin ping || die "mariadb did not start"
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'algobench';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" || die "database setup failed"
  (umask 077; cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$BASE/slurmdbd.log
PidFile=$BASE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=algobench
StorageLoc=slurm_acct_db
EOF
  )
  alive "$(cat "$BASE/slurmdbd.pid" 2>/dev/null)" || slurmdbd || die "slurmdbd failed"
  waitfor 30 bash -c 'echo >/dev/tcp/127.0.0.1/6819' || die "slurmdbd is not listening on 6819"
}

first_job_id() {  # a fresh state folder continues the job ids the accounting database has seen
  local max=0
  [ "$DBD" = 1 ] && max=$(mariadb -N -e "SELECT COALESCE(MAX(id_job), 0) FROM slurm_acct_db.algobench_job_table" \
    2>/dev/null) || max=0
  echo $(( ${max:-0} + 1 ))
}

write_conf() {  # write_conf HOST ACCOUNTING_LINES
  local host=$1 acct=$2 facts
  facts=$(slurmd -C | head -n1)
  local mem=$(( $(fact RealMemory "$facts") * 9 / 10 ))
  local node="CPUs=$(fact CPUs "$facts") Sockets=$(fact SocketsPerBoard "$facts") CoresPerSocket=$(fact CoresPerSocket "$facts") ThreadsPerCore=$(fact ThreadsPerCore "$facts")"
  local overrides=""
  if [ -n "$CPUS" ]; then  # declared, not detected: slurmd must take the config's word for it
    node="CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1"
    overrides="SlurmdParameters=config_overrides"
  fi
  mkdir -p /etc/slurm
  cat >"$CONF" <<EOF
ClusterName=algobench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MinJobAge=3600
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/slurmctld.log
SlurmdLogFile=$BASE/slurmd.log
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/jobcomp.txt
FirstJobId=$(first_job_id)
$overrides
$acct
NodeName=$host NodeAddr=127.0.0.1 $node RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  local t0=$SECONDS host acct="AccountingStorageType=accounting_storage/none"
  mkdir -p "$BASE/state" "$BASE/spool"
  install_packages
  host=$(hostname -s)
  getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
  start_munge
  if [ "$DBD" = 1 ]; then
    start_accounting
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux"
  fi
  write_conf "$host" "$acct"
  alive "$(cat "$BASE/slurmctld.pid" 2>/dev/null)" || slurmctld || die "slurmctld failed"
  alive "$(cat "$BASE/slurmd.pid" 2>/dev/null)" || slurmd -N "$host" || die "slurmd failed"
  waitfor 30 sh -c 'sinfo -h -o %T | grep -Eqx "idle|mixed|allocated"' || { sinfo; die "the node is not idle"; }
  if [ "$DBD" = 1 ]; then
    waitfor 30 sh -c "sacctmgr -n -P show cluster format=cluster | grep -qx algobench" \
      || die "the cluster is not registered in slurmdbd"
  fi
  log "cluster up in $((SECONDS - t0)) s (logs in $BASE)"
  sinfo
}

stop() {
  scontrol shutdown >/dev/null 2>&1  # slurmctld and slurmd
  stop_pid "$BASE/slurmctld.pid"; stop_pid "$BASE/slurmd.pid"; stop_pid "$BASE/slurmdbd.pid"
  if mariadb-admin ping >/dev/null 2>&1; then mariadb-admin shutdown; fi
  stop_pid /run/munge/munged.pid
  log "stopped"
}

status() {  # exit 0 when the cluster answers
  echo "munged: $(alive "$(cat /run/munge/munged.pid 2>/dev/null)" && echo up || echo down)"
  for d in slurmdbd slurmctld slurmd; do
    echo "$d: $(alive "$(cat "$BASE/$d.pid" 2>/dev/null)" && echo up || echo down)"
  done
  echo "mariadb: $(mariadb-admin ping 2>/dev/null || echo down)"
  sinfo 2>/dev/null
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

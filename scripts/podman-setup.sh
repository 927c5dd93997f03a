#!/usr/bin/env bash
# Makes rootful podman usable on a CI sandbox where the defaults fail: podman asks the runtime
# for nofile=1048576 and a high nproc, which a process without CAP_SYS_RESOURCE cannot set
# ("setrlimit RLIMIT_NOFILE: Operation not permitted"), and crun refuses hybrid cgroups
# ("cgroups in hybrid mode not supported"); runc accepts them. Idempotent; writes
# /etc/containers/containers.conf only when it does not exist yet.
set -euo pipefail
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  if [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ]; then nofile=1048576; fi
  mkdir -p /etc/containers
  cat > "$conf" <<CONF
[containers]
default_ulimits = [
  "nofile=$nofile:$nofile",
  "nproc=$nproc:$nproc",
]

[engine]
runtime = "runc"
CONF
fi
podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null

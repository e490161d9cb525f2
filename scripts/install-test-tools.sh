#!/usr/bin/env bash
# System tools some tests use as oracles, fault injectors or servers. Installed when we are root with
# apt (CI, fresh machines); otherwise the tests that need them say why they skip.
set -u
need=()
command -v nix-store >/dev/null 2>&1 || need+=(nix-bin)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v ps >/dev/null 2>&1 || need+=(procps)
# the peer chunkers' oracles: casync make, restic backup, borg create and borg's own borg.chunker
command -v casync >/dev/null 2>&1 || need+=(casync)
command -v restic >/dev/null 2>&1 || need+=(restic)
{ command -v borg >/dev/null 2>&1 && /usr/bin/python3 -c "import borg.chunker" >/dev/null 2>&1; } || need+=(borgbackup)
# PostgreSQL: the DuckLake catalog of datasets in s3:// (the tests start a server on 127.0.0.1)
{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} (test oracles) with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || echo "could not install ${need[*]}; tests needing them will skip"
else
    echo "not root or no apt-get: ${need[*]} not installed; tests needing them will skip"
fi
exit 0

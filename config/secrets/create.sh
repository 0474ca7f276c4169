#!/usr/bin/env bash
# Random secrets for config/compose.yaml, one file each, in this directory (ignored by git).
# An existing file is kept: run it again safely. Needs openssl.
#
# The directory is 0700 (nobody else on the host reads it); the files are 0644 because Compose
# bind-mounts them as they are and the containers read them as unprivileged users.
set -euo pipefail
cd "$(dirname "$0")"
chmod 0700 .
umask 0022

write() { # name value
  if [ -e "$1" ]; then echo "kept    config/secrets/$1"; return; fi
  printf '%s' "$2" >"$1"
  echo "created config/secrets/$1"
}
token() { openssl rand -hex 24; }

write postgres_password "$(token)"
write orchestra_database_url \
  "postgresql+asyncpg://orchestra:$(cat postgres_password)@postgres:5432/orchestra"
# A Fernet key: 32 random bytes, URL-safe base64.
write orchestra_master_key "$(openssl rand -base64 32 | tr '+/' '-_')"
write orchestra_admin_token "adm_$(token)"
write orchestra_metrics_token "$(token)"
write grafana_admin_password "$(token)"

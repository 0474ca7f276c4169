#!/usr/bin/env bash
# Instructions per streamed answer, counted by callgrind: deterministic where throughput is
# noisy (python -m tests.bench drifts 10-15 % between runs on a 2-core machine).
#
#   bash tests/bench/callgrind.sh [--redis URL] [--answers N] [--tree DIR]
#
# Runs the fake (tests/bench/fake_server.py, 50 tokens), then `orchestra serve` under
# valgrind --tool=callgrind; per route (/ask, /v1/chat/completions, streamed, 0 ms between
# tokens): 30 answers of warm-up, the counters zeroed, N answers one at a time (default 200),
# then a dump. Prints the instructions per answer. --tree runs another checkout's gateway
# (e.g. a `git worktree` of an older commit) with this venv, to compare two trees.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tree=$repo redis_url="" answers=200
while [ $# -gt 0 ]; do
  case $1 in
    --redis) redis_url=$2; shift 2 ;;
    --answers) answers=$2; shift 2 ;;
    --tree) tree=$(cd "$2" && pwd); shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
command -v valgrind > /dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
py=$repo/.venv/bin/python orchestra=$repo/.venv/bin/orchestra
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export PYTHONPATH=$tree ORCHESTRA_HOME=$work/home ORCHESTRA_LOG_FILE=$work/gateway.log
unset ORCHESTRA_DATABASE_URL ORCHESTRA_REDIS_URL
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fake_port=$(free_port) gateway_port=$(free_port)
(cd "$tree" && exec "$py" -m tests.bench.fake_server --port "$fake_port" --tokens 50) \
  > "$work/fake.log" 2>&1 &
pids+=($!)
"$orchestra" init > /dev/null
token=$(echo "sk-bench-callgrind-0000000000" | "$orchestra" apps add bench --json \
  --base-url "http://127.0.0.1:$fake_port/v1" --openai-key-stdin | "$py" -c \
  'import json, sys; print(json.load(sys.stdin)["token"])')
"$orchestra" quotas set bench --rpm 100000000 --tpm 100000000000 > /dev/null
if [ -n "$redis_url" ]; then export ORCHESTRA_REDIS_URL=$redis_url; fi
(cd "$tree" && exec valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
  "$orchestra" serve --port "$gateway_port" --workers 1) > "$work/gateway.out" 2>&1 &
pids+=($!)
"$py" - "$gateway_port" "$token" "$answers" "$work" << 'PY'
import glob, subprocess, sys, time

import httpx

port, token, answers, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
client = httpx.Client(
    base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=120
)
deadline = time.monotonic() + 300  # valgrind starts the gateway 50-100 times slower
while True:
    try:
        if client.get("/status").status_code < 500:
            break
    except httpx.TransportError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the gateway did not start under valgrind")
    time.sleep(0.5)
prompt = "Benchmark prompt: tell me something. [token-ms:0]"
bodies = {
    "ask": ("/ask", {"prompt": prompt}),
    "v1": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": prompt}]},
    ),
}


def one(route: str) -> None:
    path, body = bodies[route]
    response = client.post(path, json=body)
    if response.status_code != 200:
        sys.exit(f"{route}: HTTP {response.status_code}: {response.text[:200]}")


for route in bodies:
    for _ in range(30):
        one(route)
    time.sleep(1.5)  # records written, timers run: not counted
    subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
    for _ in range(answers):
        one(route)
    time.sleep(1.5)  # what the answers left to do (records, sweeps) counts
    subprocess.run(["callgrind_control", "-d", route], check=True, capture_output=True)
    dump = max(glob.glob(f"{work}/cg.*.*"), key=lambda path: int(path.rsplit(".", 1)[-1]))
    summary = next(line for line in open(dump) if line.startswith("summary:"))
    print(f"{route}: {int(summary.split()[1]) / answers:,.0f} instructions per answer")
PY

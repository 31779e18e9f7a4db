#!/usr/bin/env bash
# The end-to-end tour: three tenants register their own modules, a worker runs their
# workflows durably (sleep, wait for an event, retries with backoff, fan-out children),
# and globex's billing calls a real (stand-in) payment API over HTTP with a secret key.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export DWF_DB=${DWF_DB:-build/demo/dwf.sqlite3}
dwf() { "$PYTHON" -m host.cli "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -f "$DWF_DB" "$DWF_DB"-wal "$DWF_DB"-shm
mkdir -p "$(dirname "$DWF_DB")"

say "Each tenant registers its own WebAssembly module"
dwf tenant register acme build/tenants/acme.wasm
dwf tenant register globex build/tenants/globex.wasm
dwf tenant register initech build/tenants/initech.wasm
dwf tenant list

say "globex's payment API (a stand-in on loopback, logs in build/demo/payments.log)"
PAYMENTS_API_KEY=$("$PYTHON" -c 'import secrets; print("sk_demo_" + secrets.token_hex(16))')
PAYMENTS_API_KEY=$PAYMENTS_API_KEY "$PYTHON" scripts/payment_api.py > build/demo/payments.log 2>&1 &
payments=$!
for _ in $(seq 50); do grep -q listening build/demo/payments.log 2>/dev/null && break; sleep 0.1; done
GATEWAY=$(sed -n 's/^listening on //p' build/demo/payments.log)
[ -n "$GATEWAY" ] || { cat build/demo/payments.log; exit 1; }
echo "payment API at $GATEWAY"

say "globex may call it (egress is denied by default), with its API key as a secret"
dwf tenant egress globex --allow "$GATEWAY" --private   # loopback: allowed by exact address
printf '%s' "$PAYMENTS_API_KEY" | dwf secret set globex PAYMENTS_API_KEY
dwf secret list globex

say "Start a worker (logs in build/demo/worker.log)"
# Started directly (not through the dwf function) so $! is the worker process itself.
"$PYTHON" -m host.cli worker > build/demo/worker.log 2>&1 &
worker=$!
trap 'kill $worker $payments 2>/dev/null || true' EXIT
sleep 1
kill -0 $worker 2>/dev/null || { cat build/demo/worker.log; exit 1; }

say "acme: onboarding sequence (steps, a durable sleep, then waits for a manager's approval)"
dwf run acme onboarding --id onboard-ada \
    --params '{"email": "ada@example.com", "nudge_after_ms": 1500}'
sleep 3
dwf status acme onboard-ada
say "The manager approves: the waiting instance wakes and finishes"
dwf send-event acme onboard-ada approval --payload '{"approved": true}'

say "globex: a real HTTP charge; the gateway is down twice (503), retried with backoff"
dwf run globex billing_retry --wait --params "{\"amount_cents\": 4200, \"fail_attempts\": 2, \"retry_delay_ms\": 250, \"gateway_url\": \"$GATEWAY\"}"
echo "the payment API saw:"; cat build/demo/payments.log

say "globex: a declined card (402) is not retried; the workflow fails with PaymentFailed"
dwf run globex billing_retry --wait --params "{\"amount_cents\": 999, \"decline\": true, \"gateway_url\": \"$GATEWAY\"}" || true

say "initech: a job pipeline fanning out 4 child workflows and collecting their results"
dwf run initech pipeline --wait --params '{"chunks": 4}'

for _ in $(seq 50); do
    dwf status acme onboard-ada --json | grep -q '"status": "complete"' && break
    sleep 0.2
done
say "acme: the onboarding journal"
dwf status acme onboard-ada
say "Every instance, all tenants"
dwf list

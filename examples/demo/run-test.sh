#!/usr/bin/env bash
# A stand-in for one test of a real suite: `run-test.sh TEST_NAME`.
# It takes a while (longer for tests named *slow*), prints a little, and passes, except:
#   billing/test_refund_rounding  always fails (a real bug),
#   net/test_reconnect            is flaky: fails on its first attempt, passes on a retry.
# Hydra sets HYDRA_TASK, HYDRA_ATTEMPT and HYDRA_WORKER for every test it runs.
set -euo pipefail

name="$1"
# A stable duration per test, 50-450 ms, from the name's checksum.
sum=$(printf '%s' "$name" | cksum | cut -d' ' -f1)
ms=$(( 50 + sum % 400 ))
case "$name" in
  *slow*) ms=$(( ms + 1200 )) ;;
esac

echo "running $name (attempt ${HYDRA_ATTEMPT:-1} on ${HYDRA_WORKER:-?})"
sleep "$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))"

case "$name" in
  billing/test_refund_rounding)
    echo "AssertionError: refund of 10.00 split 3 ways: expected 3.34 + 3.33 + 3.33, got 3.33 * 3" >&2
    exit 1
    ;;
  net/test_reconnect)
    if [ "${HYDRA_ATTEMPT:-1}" = 1 ]; then
      echo "ConnectionResetError: peer closed the connection during the handshake" >&2
      exit 1
    fi
    ;;
esac
echo "ok"

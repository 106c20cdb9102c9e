#!/usr/bin/env bash
# Fetches the CDNOW sample (Fader & Hardie's 2,357 CDNOW customers, first
# purchase in Q1 1997, transactions to June 1998) for tests/cdnow_reference.rs.
#
# The data ships inside the `lifetimes` wheel on PyPI (MIT licence); this
# downloads that wheel with pip and unpacks the three files we use into
# target/cdnow/ (not committed):
#   CDNOW_sample.txt    the transactions: master id, customer 1..2357,
#                       date (yyyymmdd), CDs bought, dollar value
#   cdnow_customers_summary.csv                     lifetimes' (x, t_x, T)
#   cdnow_customers_summary_with_transactions.csv   the same with mean spend
# and checks them against known SHA-256 sums. Safe to rerun: it does nothing
# when the files are already there and correct.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/cdnow
files=(
  "CDNOW_sample.txt 6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a"
  "cdnow_customers_summary.csv 09d92ca80daaabe8be0f997d4c539f9c9606106baa5b199081fe01cbce5fa9f6"
  "cdnow_customers_summary_with_transactions.csv 7ddd11b55be3227edfc1d58675154e96971b0de3ad37ddd9280d1dba154b8b2f"
)

verify() {
  local entry name sum
  for entry in "${files[@]}"; do
    read -r name sum <<<"$entry"
    [[ -f "$out/$name" ]] || return 1
    [[ "$(sha256sum "$out/$name" | cut -d' ' -f1)" == "$sum" ]] || return 1
  done
}

if verify; then
  echo "fetch-cdnow: $out already holds the CDNOW sample"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet lifetimes==0.11.3 --no-deps --only-binary=:all: -d "$tmp"
wheel="$(ls "$tmp"/*.whl)"

mkdir -p "$out"
python3 - "$wheel" "$out" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
names = [
    "CDNOW_sample.txt",
    "cdnow_customers_summary.csv",
    "cdnow_customers_summary_with_transactions.csv",
]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with open(f"{out}/{name}", "wb") as f:
            f.write(z.read(f"lifetimes/datasets/{name}"))
PY

if ! verify; then
  echo "fetch-cdnow: the files in $out do not have the expected SHA-256 sums" >&2
  exit 1
fi
echo "fetch-cdnow: wrote $out/{${files[0]%% *},cdnow_customers_summary*.csv}"

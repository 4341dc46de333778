#!/usr/bin/env bash
# Fresh machine -> ready: .venv/ with every dependency, Fashion-MNIST, the offline ImageNet weights.
#   bash scripts/setup.sh train [hydra overrides]   # then trains the default experiment
#   bash scripts/setup.sh test  [pytest args]       # then runs the test suite
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"; shift || true
case "$mode" in train|test|install) ;; *) echo "usage: $0 train|test|install [args]" >&2; exit 2;; esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

# System packages: Fashion-MNIST from Debian (its IDX files land in /usr/share/datasets), and a
# headless Chromium for the web page's browser test. Best effort for users (without apt the data
# is downloaded on first use); in CI (CI=true) a failed install stops here, since the tests that
# need these would otherwise fail later for a less obvious reason.
debs=()
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || debs+=(dataset-fashion-mnist)
[ "$mode" = test ] && ! command -v chromedriver >/dev/null && debs+=(chromium chromium-driver)
if command -v apt-get >/dev/null && [ ${#debs[@]} -gt 0 ]; then
  { as_root apt-get update -qq && as_root apt-get install -y -qq "${debs[@]}" >/dev/null; } \
    || { echo "setup: could not apt-get ${debs[*]}; Fashion-MNIST is then downloaded on first use" >&2
         [ -z "${CI:-}" ] || exit 1; }
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev,serve,kaggle]"

case "$mode" in
  train) exec .venv/bin/python train.py "$@" ;;
  test) exec .venv/bin/python -m pytest "$@" ;;
  install) echo "setup: done; activate with: source .venv/bin/activate" ;;
esac

#!/usr/bin/env bash
# Idempotent setup: a Python venv with the pinned torch wheel (our libtorch), wired so that plain
# `cargo build` / `cargo test` work afterwards with nothing exported by hand.
#
# The venv is heavy (about 4.6 GB with the nvidia-* wheels that libtorch_cpu links against), so it
# lives outside the checkout, in a cache keyed by the pinned torch and Python versions; `.venv` in
# the checkout is a symlink to it. A fresh clone on a machine that already has the cache is ready in
# well under a second; on a new machine the install takes about a minute.
set -euo pipefail

TORCH_VERSION=2.11.0
# Small Python packages tests use to check our files against the reference implementations
# (safetensors: checkpoints load in Python; pytorch-fid: our FID Inception against theirs, with
# torchvision pinned to torch 2.11.0's match and torch itself spelled out, or pip upgrades torch).
# Installed into the same venv; changing the list installs the difference without rebuilding it.
PY_EXTRAS="safetensors==0.8.0 pytorch-fid==0.3.0 torchvision==0.26.0 prdc==0.2 scikit-learn==1.9.1 torch==2.11.0"
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
py_version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cache=${GAN_LAUNCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gan-launch}
venv="$cache/venv-torch-$TORCH_VERSION-py$py_version"

if [ ! -f "$venv/.complete" ]; then
  echo "setup: installing torch==$TORCH_VERSION into $venv (about 1 minute, 4.6 GB)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
  # Read the version file rather than importing torch (which warns about the absent numpy).
  installed=$(sed -n "s/^__version__ = '\(.*\)'$/\1/p" "$venv/lib/python$py_version/site-packages/torch/version.py")
  case "$installed" in
    "$TORCH_VERSION"|"$TORCH_VERSION"+*) ;;
    *) echo "setup: expected torch $TORCH_VERSION, got $installed" >&2; exit 1 ;;
  esac
  # Written last, so an interrupted install is redone rather than trusted.
  echo "$installed" > "$venv/.complete"
fi

if [ "$(cat "$venv/.extras" 2>/dev/null)" != "$PY_EXTRAS" ]; then
  echo "setup: installing $PY_EXTRAS into $venv" >&2
  # shellcheck disable=SC2086 # the list is split into packages on purpose
  "$venv/bin/pip" install --quiet --disable-pip-version-check $PY_EXTRAS
  echo "$PY_EXTRAS" > "$venv/.extras"
fi

torch_dir="$venv/lib/python$py_version/site-packages/torch"
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || { echo "setup: $torch_dir has no lib/libtorch_cpu.so" >&2; exit 1; }

# Relative-free absolute symlinks: cargo's [env] LIBTORCH points at .libtorch (see .cargo/config.toml).
ln -sfn "$venv" "$repo/.venv"
ln -sfn "$torch_dir" "$repo/.libtorch"

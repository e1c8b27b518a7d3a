#!/usr/bin/env bash
# What the browser test (tests/integration/test_ui_forms.py) needs: Debian's chromium and
# playwright-core from npm in a private folder (tests/integration/ui/node_modules, gitignored).
# playwright-core downloads no browser: it drives /usr/bin/chromium. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)  # a nodesource nodejs ships its own npm
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

UI=tests/integration/ui
if [ ! -f "$UI/node_modules/playwright-core/package.json" ]; then
    (cd "$UI" && npm install --no-audit --no-fund --loglevel=error)
fi
chromium --version
node -e "require('./$UI/node_modules/playwright-core'); console.log('playwright-core', require('./$UI/node_modules/playwright-core/package.json').version)"

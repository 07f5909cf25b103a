#!/usr/bin/env bash
# tools.sh — the Debian tools the tests run, installed when missing (never skipped):
#
#   deploy/local/tools.sh install promtool   # Debian's prometheus package: promtool checks the
#                                            # alert rules, their unit tests and the dashboards' PromQL
#   deploy/local/tools.sh install chromium   # Debian's chromium: the console's browser test (chromedp)
#   deploy/local/tools.sh check promtool     # exit 1 naming the install command when missing
#
# Installing needs root or password-less sudo; otherwise it fails with the command to run.
set -euo pipefail

die() { echo "tools.sh: $*" >&2; exit 1; }
say() { echo "tools.sh: $*" >&2; }

package_of() {
  case "$1" in
    promtool) echo prometheus ;;
    chromium) echo chromium ;;
    *) die "unknown tool $1 (known: promtool, chromium)" ;;
  esac
}

# wait_for_apt: another apt-get/dpkg holds the locks; wait, don't race it
wait_for_apt() {
  local i
  for i in $(seq 1 600); do
    if ! pgrep -x apt-get >/dev/null 2>&1 && ! pgrep -x dpkg >/dev/null 2>&1 && ! pgrep -x apt >/dev/null 2>&1; then
      return 0
    fi
    [ "$i" = 1 ] && say "waiting for a running apt-get/dpkg to finish"
    sleep 1
  done
  die "apt-get/dpkg still running after 10 minutes"
}

install_tool() {
  local tool=$1 pkg
  pkg=$(package_of "$tool")
  command -v "$tool" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "$tool is missing and this is no Debian/Ubuntu system: install the $pkg package"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
      die "$tool is missing. Install it with: sudo apt-get update && sudo apt-get install -y --no-install-recommends $pkg"
    sudo="sudo"
  fi
  wait_for_apt
  command -v "$tool" >/dev/null 2>&1 && return 0
  say "installing $tool: apt-get install $pkg"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  # The package's service is never started here (no init system in CI; policy-rc.d on images).
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$pkg" >/dev/null
  command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after apt-get install $pkg"
  say "installed $tool"
}

cmd=${1:-}
shift || true
case "$cmd" in
  install) for t in "$@"; do install_tool "$t"; done ;;
  check)
    for t in "$@"; do
      command -v "$t" >/dev/null 2>&1 || die "$t is missing: sudo apt-get install -y --no-install-recommends $(package_of "$t") (make test installs it)"
    done ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

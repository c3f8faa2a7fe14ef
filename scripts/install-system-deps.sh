#!/usr/bin/env bash
# Installs the Debian packages the test suite's real servers need.
# Idempotent: does nothing when everything is already there. Noninteractive. When not root it
# only prints what is missing (the tests then skip, or fail under POSTROOM_REQUIRE_SERVICES=1).
set -euo pipefail

# chromium: the web UI tests drive it with Playwright (never a downloaded browser build)
packages=(postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "postroom: the tests need these Debian packages: ${missing[*]}" >&2
  echo "postroom: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "postroom: installing ${missing[*]} (Debian packages for the test mail servers)"
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string postroom.test" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" >/dev/null
# The packages may start system-wide daemons on the standard ports; the tests run their
# own private instances on loopback high ports, so stop the system ones.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl stop postfix dovecot >/dev/null 2>&1 || true
  systemctl disable postfix dovecot >/dev/null 2>&1 || true
fi
(command -v postfix >/dev/null && postfix status >/dev/null 2>&1 && postfix stop >/dev/null 2>&1) || true
(command -v doveadm >/dev/null && doveadm stop >/dev/null 2>&1) || true
exit 0

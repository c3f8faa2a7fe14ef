#!/usr/bin/env bash
# Installs the Debian packages the test suite's real servers need.
# Idempotent: does nothing when everything is already there. Noninteractive. When not root it
# only prints what is missing (the tests then skip, or fail under POSTROOM_REQUIRE_SERVICES=1).
#
# Exim and Cyrus IMAP conflict with Postfix as installed packages (all three are a
# mail-transport-agent or need one), so they are never installed: their .deb files are
# downloaded and unpacked (`dpkg -x`) into a private directory, and the tests run them from
# there with their own configuration (tests/harness/exim.py, tests/harness/cyrus.py).
set -euo pipefail

# chromium: the web UI tests drive it with Playwright (never a downloaded browser build)
# libidn12 libical3 libpcre3 libxapian30: shared libraries the unpacked Exim/Cyrus binaries
# link against (plain libraries: installing them conflicts with nothing)
# libwrap0 libpam0g: shared libraries of the unpacked Dante SOCKS server
packages=(postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl chromium
          libidn12 libical3 libpcre3 libxapian30 libwrap0 libpam0g)
# unpacked into $private, never installed
unpacked=(exim4-daemon-light exim4-base exim4-config cyrus-imapd cyrus-common sasl2-bin)
# proxies for the proxy tests (SOCKS5: Dante, HTTP CONNECT: tinyproxy), also only unpacked:
# installed, their packages would start system-wide daemons; the tests run private ones
proxies=(dante-server tinyproxy-bin)
private="${POSTROOM_TEST_SERVERS_DIR:-/opt/postroom-test-servers}"

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_unpack=0
[ -f "$private/.complete" ] || need_unpack=1
need_proxies=0
[ -f "$private/.proxies-complete" ] || need_proxies=1
need_users=0
getent passwd Debian-exim >/dev/null && getent passwd cyrus >/dev/null || need_users=1
if [ ${#missing[@]} -eq 0 ] && [ $need_unpack -eq 0 ] && [ $need_users -eq 0 ] \
   && [ $need_proxies -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  [ ${#missing[@]} -eq 0 ] || echo "postroom: the tests need these Debian packages: ${missing[*]}" >&2
  [ $need_unpack -eq 0 ] || echo "postroom: the tests need ${unpacked[*]} unpacked in $private" >&2
  [ $need_proxies -eq 0 ] || echo "postroom: the tests need ${proxies[*]} unpacked in $private" >&2
  echo "postroom: run as root: sudo bash scripts/install-system-deps.sh" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
updated=0
if [ ${#missing[@]} -gt 0 ]; then
  echo "postroom: installing ${missing[*]} (Debian packages for the test mail servers)"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  echo "postfix postfix/mailname string postroom.test" | debconf-set-selections
  apt-get update -qq
  updated=1
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
fi
if [ $need_users -eq 1 ]; then
  # The unpacked binaries run as the users their packages would create: Exim's compiled-in
  # exim_user is Debian-exim; Cyrus runs as cyrus in group mail.
  getent group Debian-exim >/dev/null || groupadd --system Debian-exim
  getent passwd Debian-exim >/dev/null || useradd --system --gid Debian-exim \
    --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin Debian-exim
  getent passwd cyrus >/dev/null || useradd --system --gid mail \
    --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin cyrus
fi
if [ $need_unpack -eq 1 ]; then
  echo "postroom: unpacking ${unpacked[*]} into $private (private Exim and Cyrus IMAP)"
  [ $updated -eq 1 ] || apt-get update -qq
  download="$(mktemp -d)"
  chmod 755 "$download"  # apt's _apt user writes the downloads
  (cd "$download" && apt-get download -qq "${unpacked[@]}" >/dev/null 2>&1 \
    || apt-get download "${unpacked[@]}")
  rm -rf "$private"
  mkdir -p "$private/root"
  : > "$private/VERSIONS"
  for deb in "$download"/*.deb; do
    dpkg -x "$deb" "$private/root"
    printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >> "$private/VERSIONS"
  done
  rm -rf "$download"
  # A set-uid Exim re-executes its delivery processes in "secure mode", which ignores
  # LD_LIBRARY_PATH and the private configuration: queued mail would never be delivered.
  chmod u-s "$private/root/usr/sbin/exim4"
  chmod 755 "$private" "$private/root"
  touch "$private/.complete"
fi
if [ $need_proxies -eq 1 ]; then
  # added to the private tree without touching what is there (other runs may be using it)
  echo "postroom: unpacking ${proxies[*]} into $private (private SOCKS5 and HTTP proxies)"
  [ $updated -eq 1 ] || apt-get update -qq
  download="$(mktemp -d)"
  chmod 755 "$download"
  (cd "$download" && apt-get download -qq "${proxies[@]}" >/dev/null 2>&1 \
    || apt-get download "${proxies[@]}")
  mkdir -p "$private/root"
  for deb in "$download"/*.deb; do
    dpkg -x "$deb" "$private/root"
    printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >> "$private/VERSIONS"
  done
  rm -rf "$download"
  chmod 755 "$private" "$private/root"
  touch "$private/.proxies-complete"
fi
exit 0

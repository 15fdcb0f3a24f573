#!/usr/bin/env bash
# Makes etcd 3.5 (etcd, etcdctl, etcdutl) available beside Debian's etcd 3.4,
# without touching the system's apt configuration: a private apt setup under
# .cache/etcd-3.5 downloads the packages of a newer Debian suite from the
# mirror the system already uses, and dpkg-deb extracts them there. The
# binaries are static Go programs and run on bookworm.
#
# Sourced by test.sh and the bench; exports ETCD35_BIN (the folder holding
# etcd 3.5's binaries). A second run reuses what the first fetched.
set -euo pipefail

etcd35_root="$(pwd)/.cache/etcd-3.5"
export ETCD35_BIN="$etcd35_root/root/usr/bin"

if [ ! -x "$ETCD35_BIN/etcd" ] || [ ! -x "$ETCD35_BIN/etcdctl" ]; then
  echo "fetching etcd 3.5 from a newer Debian suite into $etcd35_root"
  apt_dir="$etcd35_root/apt"
  rm -rf "$apt_dir" "$etcd35_root/root" "$etcd35_root/debs"
  mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,sources.list.d,preferences.d} "$etcd35_root/debs"

  # The mirror the system's own sources use for Debian's main archive.
  mirror=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")
    [ -n "$mirror" ] && break
  done
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) print $i; break } }' /etc/apt/sources.list | head -n 1)
  fi
  if [ -z "$mirror" ]; then
    echo "no Debian mirror found in /etc/apt sources" >&2
    exit 1
  fi

  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$apt_dir/apt.conf" <<EOF
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "$apt_dir/sources.list.d";
Dir::Etc::Preferences "$apt_dir/preferences";
Dir::Etc::PreferencesParts "$apt_dir/preferences.d";
Dir::State "$apt_dir";
Dir::State::Lists "$apt_dir/lists";
Dir::State::status "/dev/null";
Dir::Cache "$apt_dir/cache";
Dir::Cache::Archives "$apt_dir/cache/archives";
APT::Sandbox::User "$(id -un)";
EOF
  # sid ships the newest 3.5 (3.5.28 and later check auth on more RPCs, such
  # as lease renewals and Status); trixie, 3.5.16, when sid has moved on.
  fetched=""
  for suite in sid trixie; do
    echo "deb [signed-by=$keyring] $mirror $suite main" >"$apt_dir/sources.list"
    APT_CONFIG="$apt_dir/apt.conf" apt-get update -qq >/dev/null 2>&1 || continue
    version=$(APT_CONFIG="$apt_dir/apt.conf" apt-cache policy etcd-server | awk '/Candidate:/ { print $2 }')
    case "$version" in
      3.5.*)
        (cd "$etcd35_root/debs" && APT_CONFIG="$apt_dir/apt.conf" apt-get download -qq etcd-server etcd-client >/dev/null)
        fetched="$suite"
        break
        ;;
    esac
  done
  if [ -z "$fetched" ]; then
    echo "no etcd 3.5 found in Debian's trixie or sid at $mirror" >&2
    exit 1
  fi
  for deb in "$etcd35_root"/debs/*.deb; do dpkg-deb -x "$deb" "$etcd35_root/root"; done
  rm -rf "$apt_dir" "$etcd35_root/debs"
fi
echo "etcd 3.5 for the tests: $("$ETCD35_BIN/etcd" --version | head -n 1)"

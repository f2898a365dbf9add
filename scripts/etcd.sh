#!/usr/bin/env bash
# Puts the etcd and etcdctl of one etcd line into .etcd/<line>/ (git-ignored) and prints the path
# of its etcd binary, for ETCD_BIN:
#
#   ETCD_BIN=$(scripts/etcd.sh 3.5) npm test
#
# Lines:
#   3.4  the system's Debian 12 etcd-server/etcd-client (3.4.23), installed with apt-get if missing
#        and linked into .etcd/3.4/bin/
#   3.5  Debian trixie's etcd-server/etcd-client (3.5.16), unpacked into .etcd/3.5/ with dpkg-deb;
#        nothing is installed into the system
#   sid  Debian unstable's, the same way (whatever version sid has today)
#
# A line already present is reused. Messages go to stderr; stdout is only the path.
#
# The archive is the one the machine's apt sources name (deb822 .sources or one-line .list):
# this repo names no host. DEBIAN_MIRROR=<url> overrides it.
#
# Signatures: apt-get update checks the suite's InRelease against Debian's archive keyring, and
# apt-get download checks each .deb's SHA256 against the Packages index that InRelease signs.
# Debian 12's debian-archive-keyring (2023.3+deb12u2 and later) holds the trixie archive and
# release keys, so trixie and sid verify with no extra key. An older keyring fails here, loudly
# (NO_PUBKEY): upgrade debian-archive-keyring; this script never turns verification off.
set -euo pipefail

readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
root="$(cd "$(dirname "$0")/.." && pwd)"

die() {
  echo "scripts/etcd.sh: $*" >&2
  exit 1
}

line="${1:-}"
case "$line" in
  3.4) suite= ;;
  3.5) suite=trixie ;;
  sid) suite=sid ;;
  *) die "usage: scripts/etcd.sh 3.4|3.5|sid (prints the path of that line's etcd binary)" ;;
esac

dest="$root/.etcd/$line"
bin="$dest/bin"

if [ -x "$bin/etcd" ] && [ -x "$bin/etcdctl" ]; then
  echo "$bin/etcd"
  exit 0
fi

# --- 3.4: the system's packages, linked (their versions are what Debian 12 ships) ---
if [ -z "$suite" ]; then
  if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/bin/etcdctl ]; then
    [ "$(id -u)" = 0 ] || die "etcd 3.4 is not installed: run 'apt-get install etcd-server etcd-client' as root"
    echo "scripts/etcd.sh: installing etcd-server and etcd-client (Debian 12)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
      die "apt-get update failed: is the Debian archive reachable?"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >&2 ||
      die "apt-get install etcd-server etcd-client failed"
  fi
  version="$(/usr/bin/etcd --version | sed -n 's/^etcd Version: //p')"
  case "$version" in 3.4.*) ;; *) die "/usr/bin/etcd is $version, not 3.4" ;; esac
  mkdir -p "$bin"
  ln -sf /usr/bin/etcd "$bin/etcd"
  ln -sf /usr/bin/etcdctl "$bin/etcdctl"
  echo "$bin/etcd"
  exit 0
fi

# --- 3.5 / sid: Debian's packages of that suite, fetched with an apt configuration of our own ---

# The first non-security archive named by the machine's apt sources.
archive_uri() {
  local file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    while read -r uri; do
      case "$uri" in *security*) ;; http://* | https://*) echo "$uri"; return 0 ;; esac
    done < <(sed -n 's/^URIs:[[:space:]]*//p' "$file" | tr ' ' '\n')
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    while read -r uri; do
      case "$uri" in *security*) ;; http://* | https://*) echo "$uri"; return 0 ;; esac
    done < <(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$file")
  done
  return 1
}

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  die "apt-get and dpkg-deb are needed to fetch etcd $line (Debian/Ubuntu)"
[ -r "$KEYRING" ] || die "$KEYRING is missing: apt-get install debian-archive-keyring"
uri="${DEBIAN_MIRROR:-$(archive_uri || true)}"
[ -n "$uri" ] || die "no Debian archive in /etc/apt/sources.list{,.d/*}: set DEBIAN_MIRROR=<url>"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
echo "deb [signed-by=$KEYRING] $uri $suite main" >"$work/sources.list"
apt=(
  -o "Dir::Etc::sourcelist=$work/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "APT::Get::List-Cleanup=0"
  # The index of one suite and architecture only; no translations, no contents.
  -o "Acquire::Languages=none"
  -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
)
# apt drops to the _apt user to download, which cannot enter our private temp dir.
[ "$(id -u)" = 0 ] && apt+=(-o "APT::Sandbox::User=root")

echo "scripts/etcd.sh: reading $uri $suite (signed-by $KEYRING)" >&2
# apt keeps an index only once its InRelease verified: no Packages file means unreachable or
# unverified (apt-get update may still exit 0 on a fetch failure, with a warning).
if ! apt-get "${apt[@]}" -q update >"$work/update.log" 2>&1 ||
  ! compgen -G "$work/lists/*_Packages*" >/dev/null; then
  cat "$work/update.log" >&2
  die "cannot read the Debian archive $uri ($suite): is it reachable, and is its InRelease signature valid?"
fi

(cd "$work/debs" && apt-get "${apt[@]}" -q download etcd-server etcd-client) >"$work/download.log" 2>&1 || {
  cat "$work/download.log" >&2
  die "apt-get download etcd-server etcd-client from $suite failed"
}

rm -rf "$dest"
mkdir -p "$dest/root" "$bin"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dest/root"
  dpkg-deb -f "$deb" Package Version | paste -sd ' ' >>"$dest/packages"
done
ln -s ../root/usr/bin/etcd "$bin/etcd"
ln -s ../root/usr/bin/etcdctl "$bin/etcdctl"
"$bin/etcd" --version >/dev/null 2>&1 || die "the unpacked $bin/etcd does not run on this machine"
echo "scripts/etcd.sh: $(sed -n 's/^etcd Version: //p' < <("$bin/etcd" --version)) in $dest" >&2
echo "$bin/etcd"

#!/usr/bin/env bash
# CTest script test (privileged): the .deb made from this build dir (`cpack -G DEB`,
# dist/packaging.cmake) holds what it should, installs with `dpkg -i`, runs (`splicer
# --version`, `splicer check` on the installed config, its man pages found), and `dpkg --purge`
# leaves nothing behind: no file, no /etc/splicer, no state, no `splicer` user or group.
#
# The install runs for real, with dpkg and the maintainer scripts, on this machine's own /etc,
# /usr and /var, but seen through overlays in a private mount namespace (`unshare --mount`, with a pid namespace):
# every write lands in a tmpfs that goes away with the namespace. So the test changes nothing
# the other tests (or other developers on this machine) rely on, even when it is killed
# midway: the `splicer` user scripts/install-deps made stays, and the package's postinst is
# still made to create its own (the user is deleted inside the overlay first). A second round
# installs over a user that was there before and checks that purge leaves that one alone.
#
# usage: package_test.sh SOURCE_DIR BINARY_DIR
set -euo pipefail
# dpkg wants ldconfig and start-stop-daemon on PATH, which a user's PATH may lack.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
src=$1
build=$2

say() { echo "package test: $*"; }
fail() { say "FAIL: $*"; exit 1; }

# Status of the splicer package in dpkg's database: installed, config-files, ... or empty
# when dpkg has never heard of it.
package_status() { dpkg-query -W -f='${db:Status-Status}' splicer 2>/dev/null || true; }

if [[ -z ${SPLICER_PACKAGE_TEST_INNER:-} ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    fail "needs root (dpkg -i, mount namespaces): run it as root, as CI does"
  fi
  status=$(package_status)
  if [[ -n $status && $status != not-installed ]]; then
    fail "a splicer package is already on this machine ($status): refusing to test over it" \
         "(the test would install and purge its own); remove it with dpkg --purge splicer"
  fi
  work=$(mktemp -d /tmp/splicer-package-test.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  user_before=$(getent passwd splicer || true)
  started=$(date +%s%N)

  # 1. Build the package into a directory of the test's own (cpack builds the project first,
  # a no-op on a built tree).
  cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/cpack" >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; fail "cpack -G DEB failed"; }
  debs=("$work"/cpack/splicer_*.deb)
  [[ -f ${debs[0]} && ${#debs[@]} -eq 1 ]] || fail "cpack made no single splicer_*.deb: ${debs[*]}"
  deb=${debs[0]}
  built_ms=$((($(date +%s%N) - started) / 1000000))
  say "built $(basename "$deb") ($(stat -c %s "$deb") bytes) in $built_ms ms"

  # 2. Its contents: exactly these files, owned by root, the maintainer scripts and conffile.
  expected=(./etc/splicer/splicer.conf ./usr/sbin/splicer ./usr/share/man/man5/splicer.conf.5.gz
            ./usr/share/man/man8/splicer.8.gz)
  if [[ -d $src/dist/systemd ]]; then
    for unit in "$src"/dist/systemd/*; do
      [[ -f $unit ]] && expected+=("./lib/systemd/system/$(basename "$unit")")
    done
  fi
  dpkg-deb -c "$deb" >"$work/contents"
  actual=$(awk '$1 ~ /^-/ { print $6 }' "$work/contents" | sort)
  wanted=$(printf '%s\n' "${expected[@]}" | sort)
  if [[ $actual != "$wanted" ]]; then
    fail "package files differ from the expected ones (< expected, > packaged):"$'\n'"$(
      diff <(echo "$wanted") <(echo "$actual") || true)"
  fi
  if awk '$2 != "root/root" { bad = 1 } END { exit !bad }' "$work/contents"; then
    fail "files not owned by root/root:"$'\n'"$(awk '$2 != "root/root"' "$work/contents")"
  fi
  mkdir "$work/control"
  dpkg-deb -e "$deb" "$work/control"
  [[ $(cat "$work/control/conffiles") == /etc/splicer/splicer.conf ]] ||
    fail "conffiles: $(cat "$work/control/conffiles")"
  for script in postinst prerm postrm; do
    [[ -x $work/control/$script ]] || fail "no executable $script in the package"
  done
  depends=$(dpkg-deb -f "$deb" Depends)
  for library in adduser libbpf1 liburing2 'libconfig++9v5' libpcre2-8-0; do
    [[ $depends == *"$library"* ]] || fail "Depends lacks $library: $depends"
  done
  # The conffile is the binary's embedded default, written by the same code.
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/splicer/splicer.conf >"$work/packaged.conf"
  "$build/splicer_write_default_config" >"$work/embedded.conf"
  cmp -s "$work/packaged.conf" "$work/embedded.conf" ||
    fail "the packaged splicer.conf is not the embedded default"
  say "contents: ${#expected[@]} files, conffile, maintainer scripts, Depends: $depends"

  # 3. Install and purge inside the namespace (below); whatever it does, it cannot outlive it.
  rc=0
  # A pid namespace of its own with its own /proc: userdel refuses a user any process on the
  # machine runs as, and a test daemon of another suite running as `splicer` meanwhile (its
  # privilege drop) is no business of the package's purge here.
  SPLICER_PACKAGE_TEST_INNER=1 unshare --mount --propagation private --pid --fork --mount-proc \
    "$0" "$src" "$build" "$deb" "$work" || rc=$?

  # Nothing changed out here.
  status=$(package_status)
  [[ -z $status || $status == not-installed ]] || fail "package left in dpkg's database: $status"
  [[ ! -e /usr/sbin/splicer && ! -e /etc/splicer ]] || fail "files left on the machine"
  [[ $(getent passwd splicer || true) == "$user_before" ]] || fail "the splicer user changed"
  say "took $((($(date +%s%N) - started) / 1000000)) ms in all"
  exit $rc
fi

# --- inside a private mount namespace ---------------------------------------------------------
deb=$3
work=$4
mkdir "$work/layers"
mount -t tmpfs -o mode=0700 splicer-package-test "$work/layers"
for dir in etc usr var; do
  mkdir "$work/layers/$dir.upper" "$work/layers/$dir.work"
  mount -t overlay overlay \
    -o "lowerdir=/$dir,upperdir=$work/layers/$dir.upper,workdir=$work/layers/$dir.work" "/$dir"
done

# man-db's dpkg trigger rebuilds the whole man index at every install and purge (most of their
# time here); it does nothing without this flag file. `man -w` below finds the pages without
# the index, and the flag is only gone inside the overlay.
rm -f /var/lib/man-db/auto-update

installed() { [[ $(package_status) == installed ]]; }
# Whatever fails below, the package is purged before the namespace goes (it would vanish with
# it anyway; this keeps a failing run's output about the failure).
trap 'if installed; then dpkg --purge splicer >/dev/null 2>&1 || true; fi' EXIT

# One install, use and purge. $1: "created" when postinst must make the user, "kept" when the
# user exists before and must survive the purge.
round() {
  local user_case=$1
  local t0 list
  t0=$(date +%s%N)
  # --force-unsafe-io: dpkg's fsyncs protect files this namespace throws away anyway.
  dpkg --force-unsafe-io -i "$deb" >"$work/dpkg-i.log" 2>&1 ||
    { cat "$work/dpkg-i.log"; fail "dpkg -i failed"; }
  installed || fail "not installed after dpkg -i: $(package_status)"
  local installed_ms=$((($(date +%s%N) - t0) / 1000000))

  local passwd
  passwd=$(getent passwd splicer) || fail "no splicer user after install"
  local uid shell
  uid=$(cut -d: -f3 <<<"$passwd")
  shell=$(cut -d: -f7 <<<"$passwd")
  ((uid > 0 && uid < 1000)) || fail "splicer is not a system user: $passwd"
  [[ $shell == */nologin || $shell == /bin/false ]] || fail "splicer has a login shell: $passwd"
  if [[ $user_case == created ]]; then
    [[ -e /var/lib/splicer/user-created-by-package ]] || fail "postinst did not record its user"
  else
    [[ ! -e /var/lib/splicer/user-created-by-package ]] ||
      fail "postinst claimed a user that was there before"
  fi

  local version
  version=$(/usr/sbin/splicer --version) || fail "splicer --version failed"
  [[ $version == "splicer "* ]] || fail "splicer --version printed: $version"
  local checked
  checked=$(/usr/sbin/splicer check --config /etc/splicer/splicer.conf 2>&1) ||
    fail "splicer check on the installed config failed:"$'\n'"$checked"
  [[ $checked == *"/etc/splicer/splicer.conf: configuration ok"* ]] ||
    fail "splicer check said:"$'\n'"$checked"
  [[ $(man -w 8 splicer) == /usr/share/man/man8/splicer.8.gz ]] || fail "man -w 8 splicer"
  [[ $(man -w 5 splicer.conf) == /usr/share/man/man5/splicer.conf.5.gz ]] ||
    fail "man -w 5 splicer.conf"

  list=$(dpkg -L splicer)
  t0=$(date +%s%N)
  dpkg --force-unsafe-io --purge splicer >"$work/dpkg-purge.log" 2>&1 ||
    { cat "$work/dpkg-purge.log"; fail "dpkg --purge failed"; }
  local purged_ms=$((($(date +%s%N) - t0) / 1000000))

  local status
  status=$(package_status)
  [[ -z $status || $status == not-installed ]] || fail "still in dpkg's database: $status"
  local path
  while IFS= read -r path; do
    # Directories the package shares with the system (/usr/sbin, /etc, ...) stay.
    if [[ -e $path && ! -d $path ]]; then
      fail "left behind: $path"
    fi
  done <<<"$list"
  [[ ! -e /etc/splicer ]] || fail "left behind: /etc/splicer"
  [[ ! -e /var/lib/splicer ]] || fail "left behind: /var/lib/splicer"
  if [[ $user_case == created ]]; then
    ! getent passwd splicer >/dev/null || fail "user splicer left behind"
    ! getent group splicer >/dev/null || fail "group splicer left behind"
  else
    [[ $(getent passwd splicer) == "$passwd" ]] || fail "purge removed a user it did not create"
  fi
  say "round with the user $user_case: $version, check ok, dpkg -i ${installed_ms} ms," \
      "purge ${purged_ms} ms, nothing left"
}

# Round 1: no splicer user (inside the overlay), so postinst makes one and purge removes it.
if getent passwd splicer >/dev/null; then
  userdel splicer
fi
if getent group splicer >/dev/null; then
  groupdel splicer
fi
round created

# Round 2: a user made before the package (as scripts/install-deps makes it) is left alone.
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin splicer
round kept

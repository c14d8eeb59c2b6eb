#!/bin/sh
# Reset inside a workspace that has no CAP_SYS_ADMIN (a Fargate task: no overlay, no snapshots):
# a pristine copy of the home taken at baseline, and a restore that rewrites ONLY what changed since.
# POSIX sh + coreutils + findutils; runs as root (runner.sh dispatches pristine-save/pristine-restore here).
#
#   pristine.sh save <home> <store>
#       Copy <home> (cp -a: owners, modes, symlinks, times) into the root-only (0700) dir <store>:
#       <store>/v.<stamp>/tree, with <store>/v.<stamp>/marker whose mtime is the baseline time, then
#       point the symlink <store>/current at it (rename of a symlink: atomic). Saving again replaces the
#       copy (idempotent); older versions and leftovers of an interrupted save are removed. Deleting
#       the baseline = rm -rf <store>. Expects a quiet home (no process of the user writing into it).
#       Prints one line: pristine: saved entries=<n>
#   pristine.sh restore <home> <store> <uid> <gid>
#       SIGKILL every process of uid (as that uid: kill -1, repeated until none is left, so forks that
#       race the first sweep die in the next), then make <home> identical to the copy: remove what the
#       copy lacks, put back what was deleted, rewrite what differs in content or type, fix owner/mode/
#       mtime in place where only those differ. Files not changed since the baseline are not even read:
#       they keep their inode. Prints one line:
#         pristine: rewritten=<n> removed=<n> restored=<n> metadata=<n> checked=<n> killed=<n> mode=<changed|full>
#       rewritten = entries whose content/type/link target differed (new inode from the copy);
#       removed = entries not in the copy; restored = entries missing from home, copied back;
#       metadata = entries whose owner/mode/mtime only were fixed; checked = candidates examined;
#       killed = live processes of uid found by the first sweep.
#
# How changes are found: the kernel sets an inode's ctime on every change to it (content, chmod, chown,
# utimes, rename, link count), and nobody can set ctime back. Every inode changed after the marker's
# mtime therefore has ctime > marker (`find -cnewer`); a deleted or renamed entry changes its parent
# directory, whose entries are then compared with the copy. The marker is created BEFORE the copy is
# taken and the script waits until the kernel's (coarse) clock has moved past it, so a change made
# after save returns can never carry the marker's own timestamp. After a successful restore the
# marker moves forward (the home equals the copy at that moment), so the next restore only looks at
# changes since the previous one. If the clock is found behind the marker, every entry is compared.
#
# Limits: extended attributes/ACLs and hard-link structure are not compared (a hard link inside the home
# that changed is restored as a separate file); a clock that stepped backwards and forwards again
# between two resets can hide changes made in that window; nothing may start processes of uid during
# restore. Exit 0 on success; 1 with a message on stderr otherwise (the marker is not moved then, so a
# retry re-examines everything); 2 on bad usage.
set -u
set -f

SELF=$0
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C
export PATH LC_ALL
umask 077
CHROOT=$(command -v chroot || echo /usr/sbin/chroot)

die() {
  printf 'pristine: %s\n' "$*" >&2
  exit 1
}

usage() {
  echo "usage: pristine.sh save <home> <store> | restore <home> <store> <uid> <gid>" >&2
  exit 2
}

# An absolute path without trailing slashes; not "/" (a home is never the root).
clean_path() {
  p=$1
  while :; do
    case $p in */) p=${p%/} ;; *) break ;; esac
  done
  case $p in /?*) printf '%s' "$p" ;; *) return 1 ;; esac
}

exists() { [ -e "$1" ] || [ -L "$1" ]; }

# Return once a file touched now has an mtime strictly after <ref>'s mtime: the kernel stamps inodes
# with a coarse clock (a tick of a few ms), so without this a change right after <ref> could share its
# timestamp and escape `-cnewer`. <probe> is scratch.
wait_tick() { # <ref> <probe>
  i=0
  while :; do
    touch "$2" || return 1
    [ -n "$(find "$2" -newer "$1")" ] && break
    i=$((i + 1))
    [ "$i" -ge 3000 ] && return 1 # about 3 s or more: even a 1 s-granular filesystem has ticked
    sleep 0.001
  done
  rm -f "$2"
}

cmd_save() {
  [ $# -eq 2 ] || usage
  home=$(clean_path "$1") || die "home must be an absolute path"
  store=$(clean_path "$2") || die "store must be an absolute path"
  [ -d "$home" ] && [ ! -L "$home" ] || die "home is not a directory"
  case $store in "$home" | "$home"/*) die "the store must be outside the home" ;; esac
  # Root-only: the copy keeps the user's files with their modes; the user must not reach it.
  mkdir -p "$store" && chown 0:0 "$store" && chmod 700 "$store" || die "cannot create the store"

  version="$store/v.$(date +%s%N).$$"
  mkdir -m 700 "$version" || die "cannot create the version dir"
  # The marker first, then the copy: anything that changes while the copy is taken is newer than the
  # marker and so a candidate at restore (compared, never missed).
  touch "$version/marker" && wait_tick "$version/marker" "$version/tick" || {
    rm -rf "$version"
    die "the clock does not advance"
  }
  cp -a -- "$home" "$version/tree" || {
    rm -rf "$version"
    die "copying the home failed"
  }
  # Atomic switch: a new symlink renamed over the old one.
  ln -s "${version##*/}" "$store/current.$$" && mv -f -T "$store/current.$$" "$store/current" || {
    rm -rf "$version" "$store/current.$$"
    die "cannot switch the store to the new copy"
  }
  # Older versions and leftovers of interrupted saves.
  set +f
  for old in "$store"/v.* "$store"/current.*; do
    [ "$old" = "$version" ] && continue
    exists "$old" && rm -rf "$old"
  done
  set -f
  entries=$(find "$version/tree" | wc -l)
  printf 'pristine: saved entries=%s\n' "$entries"
}

# Live pids (not zombies) whose real or saved uid is <uid>: the ones kill -1 as that uid can reach.
live_pids() { # <uid>
  want=$1
  set +f
  for d in /proc/[0-9]*; do
    state='' ids=''
    while IFS= read -r line; do
      case $line in
        State:*) state=${line#State:} ;;
        Uid:*)
          ids=${line#Uid:}
          break
          ;;
      esac
    done 2> /dev/null < "$d/status"
    [ -n "$ids" ] || continue
    set -- $ids # real effective saved fs
    case $state in *Z*) continue ;; esac
    [ "$1" = "$want" ] || [ "${3:-}" = "$want" ] && printf '%s\n' "${d#/proc/}"
  done
  set -f
}

# SIGKILL every process of uid until none is left. kill(-1) as the user signals all its processes in
# one sweep under the kernel's task-list lock; a process forked by a dying one before the sweep reached
# it is caught by the next round. Prints how many live processes the first look found.
kill_user() { # <uid> <gid>
  first=
  rounds=0
  while :; do
    pids=$(live_pids "$1")
    [ -z "$pids" ] && break
    [ -n "$first" ] || first=$(printf '%s\n' "$pids" | wc -l)
    rounds=$((rounds + 1))
    # ~10 s of rounds: a process in uninterruptible sleep dies only when it wakes up.
    [ "$rounds" -gt 200 ] && die "processes of uid $1 survive SIGKILL:" $pids
    env -i "$CHROOT" --userspec="$1:$2" --groups="$2" --skip-chdir / /bin/sh -c 'kill -KILL -1' 2> /dev/null
    sleep 0.05
  done
  printf '%s' "${first:-0}"
}

cmd_restore() {
  [ $# -eq 4 ] || usage
  home=$(clean_path "$1") || die "home must be an absolute path"
  store=$(clean_path "$2") || die "store must be an absolute path"
  uid=$3 gid=$4
  case $uid$gid in *[!0-9]*) die "uid and gid must be numbers" ;; esac
  # As root, kill -1 would end the whole task.
  [ "$uid" -ne 0 ] || die "refusing to kill uid 0"
  [ -d "$home" ] && [ ! -L "$home" ] || die "home is not a directory"
  case $store in "$home" | "$home"/*) die "the store must be outside the home" ;; esac
  # Pin the version: a save running meanwhile switches the symlink, not our copy.
  [ -L "$store/current" ] || die "no pristine copy at the store"
  version=$(readlink -f -- "$store/current") || die "no pristine copy at the store"
  tree=$version/tree marker=$version/marker
  [ -d "$tree" ] && [ -f "$marker" ] || die "no pristine copy at the store"

  killed=$(kill_user "$uid" "$gid") || exit 1

  work=$(mktemp -d "$version/work.XXXXXX") || die "cannot create a work dir"
  trap 'rm -rf "$work"' EXIT
  : > "$work/counts"
  : > "$work/dirs"

  # Candidates: every entry whose inode changed after the marker. The list is complete before anything
  # is changed, so the restore's own writes never feed back into it.
  touch "$work/now"
  if [ -n "$(find "$work/now" -newer "$marker")" ]; then
    mode=changed
    find "$home" -cnewer "$marker" -print0 > "$work/cands" || die "listing changed entries failed"
  else
    mode=full # the clock is behind the marker: ctime says nothing, compare everything
    find "$home" -print0 > "$work/cands" || die "listing entries failed"
  fi
  # find lists parents before children, and xargs keeps that order across its batches.
  xargs -0 -r -a "$work/cands" sh "$SELF" _fix "$home" "$tree" "$work" || die "restoring entries failed"
  # Directory mtimes last: every change of an entry above moved its parent's mtime.
  sort -z -u "$work/dirs" | xargs -0 -r sh "$SELF" _retime "$home" "$tree" || die "restoring directory times failed"

  # The home equals the copy now and nothing of the user runs: move the marker here, so the next
  # restore skips what this one rewrote.
  touch "$work/marker" && wait_tick "$work/marker" "$work/tick" && mv -f "$work/marker" "$marker" \
    || die "cannot move the marker"

  # shellcheck disable=SC2016
  awk -v killed="$killed" -v mode="$mode" '
    { rw += $1; rm += $2; rs += $3; md += $4; n += $5 }
    END { printf "pristine: rewritten=%d removed=%d restored=%d metadata=%d checked=%d killed=%d mode=%s\n", rw, rm, rs, md, n, killed, mode }
  ' "$work/counts"
}

# Remember a directory whose mtime must be set from the copy at the end.
note_dir() {
  printf '%s\0' "$1" >> "$work/dirs"
}

note_parent() {
  [ "$h" = "$home" ] || note_dir "${h%/*}"
}

# Replace h by a fresh copy of s (new inode): content, type or link target differ.
replace() {
  [ "$h" != "$home" ] || die "the home itself is not a directory"
  rm -rf -- "$h" && cp -a -- "$s" "$h" || return 1
  rw=$((rw + 1))
  note_parent
}

# h and s are directories: remove entries the copy lacks, copy back entries the home lacks. Entries
# present in both are candidates of their own if they changed.
sync_entries() {
  set +f
  for e in "$h"/* "$h"/.[!.]* "$h"/..?*; do
    exists "$e" || continue
    exists "$s/${e##*/}" && continue
    rm -rf -- "$e" || {
      set -f
      return 1
    }
    rm=$((rm + 1))
  done
  for e in "$s"/* "$s"/.[!.]* "$s"/..?*; do
    exists "$e" || continue
    exists "$h/${e##*/}" && continue
    cp -a -- "$e" "$h/${e##*/}" || {
      set -f
      return 1
    }
    rs=$((rs + 1))
  done
  set -f
  note_dir "$h"
}

# Make h identical to s (the copy). Sets rw/rm/rs/md.
fix_one() {
  if ! exists "$s"; then
    # Not in the copy. Gone already when an ancestor was removed or replaced earlier in this restore.
    if exists "$h"; then
      rm -rf -- "$h" || return 1
      rm=$((rm + 1))
      note_parent
    fi
    return 0
  fi
  if ! exists "$h"; then
    # Listed, then an ancestor was removed/replaced; the copy's version comes back with its parent.
    [ -d "${h%/*}" ] || return 0
    cp -a -- "$s" "$h" || return 1
    rs=$((rs + 1))
    note_parent
    return 0
  fi
  # One stat for both: mode (hex, with type bits), owner, size, mtime with ns.
  both=$(stat -c '%f %u %g %s %.9Y' -- "$h" "$s") || return 1
  set -- $both
  [ $# -eq 10 ] || return 1
  hmode=$1 huid=$2 hgid=$3 hsize=$4 hmtime=$5
  smode=$6 suid=$7 sgid=$8 ssize=$9 smtime=${10}
  htype=$((0x$hmode & 0170000)) stype=$((0x$smode & 0170000))
  [ "$htype" = "$stype" ] || {
    replace
    return
  }
  case $stype in
    32768) # regular file: size first (no read), then content
      if [ "$hsize" != "$ssize" ] || ! cmp -s -- "$h" "$s"; then
        replace
        return
      fi
      ;;
    40960) # symlink (the sentinel keeps a trailing newline of a target)
      ht=$(readlink -- "$h" && echo .) && st=$(readlink -- "$s" && echo .) || return 1
      if [ "$ht" != "$st" ]; then
        replace
        return
      fi
      ;;
    16384)
      before=$((rm + rs))
      sync_entries || return 1
      # A dir whose entries changed has a new mtime because of that (already counted).
      [ "$((rm + rs))" = "$before" ] || hmtime=$smtime
      ;;
  esac
  # Same type and content: owner, mode and mtime in place (chown before chmod: chown clears set-id bits).
  fixed=0
  if [ "$huid:$hgid" != "$suid:$sgid" ]; then
    chown -h "$suid:$sgid" -- "$h" || return 1
    fixed=1
  fi
  if [ "$stype" != 40960 ] && { [ "$hmode" != "$smode" ] || [ "$fixed" = 1 ]; }; then
    chmod "$(printf '%o' $((0x$smode & 07777)))" -- "$h" || return 1
    [ "$hmode" != "$smode" ] && fixed=1
  fi
  if [ "$hmtime" != "$smtime" ]; then
    # Directories get their time at the very end (their entries may still change).
    [ "$stype" = 16384 ] || touch -h -r "$s" -- "$h" || return 1
    fixed=1
  fi
  [ "$fixed" = 1 ] && md=$((md + 1))
  return 0
}

# xargs batch: _fix <home> <tree> <work> <absolute paths...>; appends "rw rm rs md n" to work/counts.
cmd_fix() {
  home=$1 tree=$2 work=$3
  shift 3
  rw=0 rm=0 rs=0 md=0 n=0 failed=0
  for h in "$@"; do
    n=$((n + 1))
    s=$tree${h#"$home"}
    if ! fix_one; then
      printf 'pristine: cannot restore an entry (#%s in this batch)\n' "$n" >&2
      failed=1
    fi
  done
  printf '%s %s %s %s %s\n' "$rw" "$rm" "$rs" "$md" "$n" >> "$work/counts"
  return "$failed"
}

# xargs batch: _retime <home> <tree> <dirs...>: each dir's mtime from the copy.
cmd_retime() {
  home=$1 tree=$2
  shift 2
  for h in "$@"; do
    s=$tree${h#"$home"}
    [ -d "$h" ] && [ ! -L "$h" ] && [ -d "$s" ] && [ ! -L "$s" ] || continue
    touch -r "$s" -- "$h" || return 1
  done
}

sub=${1:-}
[ $# -gt 0 ] && shift
case $sub in
  save) cmd_save "$@" ;;
  restore) cmd_restore "$@" ;;
  _fix) cmd_fix "$@" ;;
  _retime) cmd_retime "$@" ;;
  *) usage ;;
esac

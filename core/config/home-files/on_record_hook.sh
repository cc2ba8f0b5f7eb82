#!/bin/sh
# Default on_record_hook_script: run when a recording (or a rotated part) is finished.
#   $1  the stream name (it may hold any character: keep it quoted, never eval it)
#   $2  the absolute path of the finished file, inside records/
# The environment also holds HOOKCAST_FILE, HOOKCAST_PART, HOOKCAST_DURATION,
# HOOKCAST_SIZE, HOOKCAST_MEDIA_SESSION_ID, ... (README, "The record script").
# hookcast runs this file directly (never through a shell command line), so the
# arguments arrive intact whatever characters they hold.
#
# Set HOOKCAST_SCRIPT_COPY_DIR in the server's environment to copy every finished file
# into that directory: the copy is written under a hidden temporary name and then
# renamed, so whatever watches the directory never sees half a file. Unset, the script
# only reports. Replace it with your own (upload to storage, notify a CMS, ...).
set -eu

stream=$1
file=$2
printf 'hookcast: recording of stream "%s" finished: %s\n' "$stream" "$file"

dir=${HOOKCAST_SCRIPT_COPY_DIR:-}
[ -n "$dir" ] || exit 0
mkdir -p -- "$dir"
name=$(basename -- "$file")
partial="$dir/.$name.copying"
cp -- "$file" "$partial"
mv -f -- "$partial" "$dir/$name"
printf 'hookcast: copied to %s\n' "$dir/$name"

#!/bin/sh
# Default on_record_hook_script: run when a recording (or a rotated part) is finished.
#   $1  the stream name
#   $2  the absolute path of the finished file, inside records/
# hookcast runs this file directly (never through a shell command line), so the
# arguments arrive intact whatever characters they hold. Quote them when you use them.
# Replace this with your own script (copy to storage, notify a CMS, ...).
printf 'hookcast: recording of stream "%s" finished: %s\n' "$1" "$2"

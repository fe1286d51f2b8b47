#!/bin/sh
# Records data/sqlite-disk.ptrace.gz: the data file of an SQLite database
# (Debian's sqlite3 library, through Python's sqlite3 module) under an OLTP
# write load, as a storage trace (pagemill record --file). The database is
# built first at its full size (about 3.5 MiB: rows of text-like values, then a third
# of them deleted so that inserts reuse free pages and the file never grows:
# record reads the file's size once), then scripts/sqlite-load.py runs
# transactions (updates mostly of a hot tenth of the rows, inserts, deletes;
# rollback journal, synchronous=FULL, so each commit writes the data file)
# while record takes a snapshot every 250 ms for 12 s.
#
#   sh scripts/record-disk-trace.sh [OUT]      (needs npm run build, python3)
set -e
root=$(dirname "$0")/..
out=${1:-$root/data/sqlite-disk.ptrace.gz}
work=$(mktemp -d)
trap 'kill $load 2>/dev/null; rm -rf "$work"' EXIT
python3 "$root/scripts/sqlite-load.py" build "$work/db.sqlite"
python3 "$root/scripts/sqlite-load.py" load "$work/db.sqlite" 14 &
load=$!
sleep 1
node "$root/dist/cli/bin.js" record --file "$work/db.sqlite" --interval 250ms --duration 12s -o "$out"
wait $load

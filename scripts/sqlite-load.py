#!/usr/bin/env python3
"""SQLite under an OLTP write load, for scripts/record-disk-trace.sh.

  sqlite-load.py build DB          the database at its full size (about 3.5 MiB)
  sqlite-load.py load DB SECONDS   transactions for SECONDS (seeded: the same run each time)
"""
import random
import sqlite3
import sys
import time

WORDS = "alpha beta gamma delta order customer item stock price amount status shipped pending paid region north south east west".split()
ROWS = 14000


def value(rng):
    # Text like a row of a business table: compressible, as real data files are.
    return " ".join(f"{rng.choice(WORDS)}={rng.randrange(100000)}" for _ in range(rng.randrange(8, 30)))


def build(path):
    rng = random.Random(1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size=4096")
    db.execute("PRAGMA auto_vacuum=NONE")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, body TEXT)")
    db.execute("CREATE INDEX by_customer ON orders (customer)")
    db.executemany("INSERT INTO orders VALUES (?, ?, ?)", ((i, rng.randrange(5000), value(rng)) for i in range(ROWS)))
    db.commit()
    # Free a third of the pages: inserts then reuse them and the file keeps its size.
    db.execute("DELETE FROM orders WHERE id % 3 = 0")
    db.commit()
    db.close()


def load(path, seconds):
    rng = random.Random(2)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=FULL")
    hot = [i for i in range(ROWS) if i % 3 and i % 10 == 1]
    end = time.time() + seconds
    while time.time() < end:
        db.execute("BEGIN")
        for _ in range(rng.randrange(1, 6)):
            r = rng.random()
            if r < 0.7:
                rid = rng.choice(hot) if rng.random() < 0.8 else rng.randrange(ROWS)
                db.execute("UPDATE orders SET body = ? WHERE id = ?", (value(rng), rid))
            elif r < 0.85:
                rid = 3 * rng.randrange(ROWS // 3)
                db.execute("INSERT OR REPLACE INTO orders VALUES (?, ?, ?)", (rid, rng.randrange(5000), value(rng)))
            else:
                db.execute("DELETE FROM orders WHERE id = ?", (3 * rng.randrange(ROWS // 3),))
        db.execute("COMMIT")
        time.sleep(0.01)
    db.close()


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2])
    else:
        load(sys.argv[2], float(sys.argv[3]))

#!/usr/bin/env python3
"""Read an `onsale export` directory with DuckDB and check it.

    scripts/duckdb-check.py DIR [--tickets N] [--orders N]

Checks that DuckDB reads all four files with the types analysts expect
(timestamps with time zone, strings, unsigned ids), that the files agree
with each other (one ticket per seat of each order, each order's total the
sum of its tickets' prices, every buyer admitted, a `sold` record per
order when the timeline starts at seq 1), and, if given, the row counts
the exporter reported. Then it runs the README's query and prints its
result. Exits 1 on any mismatch, 2 if duckdb cannot be imported
(`pip install duckdb`).
"""

import argparse
import os
import sys

try:
    import duckdb
except ImportError:
    print("duckdb is not installed: pip install duckdb", file=sys.stderr)
    sys.exit(2)

FILES = ("tickets", "orders", "admissions", "timeline")

# The README's query ("Analytics export"): sales per minute and revenue per
# section. Keep the two in step.
README_QUERY = """
SELECT date_trunc('minute', sold_at) AS minute,
       section_name,
       count(*) AS tickets,
       sum(price_cents) / 100 AS revenue
FROM 'tickets.parquet'
GROUP BY ALL
ORDER BY minute, revenue DESC
"""

EXPECTED_TYPES = {
    "tickets": {
        "event": "UBIGINT",
        "order": "UBIGINT",
        "fan": "UBIGINT",
        "position": "UBIGINT",
        "payment": "UBIGINT",
        "section": "VARCHAR",
        "section_name": "VARCHAR",
        "row": "VARCHAR",
        "seat": "VARCHAR",
        "seat_index": "UINTEGER",
        "price_level": "VARCHAR",
        "price_cents": "BIGINT",
        "sold_at": "TIMESTAMP WITH TIME ZONE",
    },
    "orders": {
        "event": "UBIGINT",
        "order": "UBIGINT",
        "fan": "UBIGINT",
        "position": "UBIGINT",
        "payment": "UBIGINT",
        "seats": "BIGINT",
        "total_cents": "BIGINT",
        "sold_at": "TIMESTAMP WITH TIME ZONE",
    },
    "admissions": {
        "event": "UBIGINT",
        "fan": "UBIGINT",
        "position": "UBIGINT",
        "admitted_at": "TIMESTAMP WITH TIME ZONE",
    },
    "timeline": {
        "event": "UBIGINT",
        "seq": "UBIGINT",
        "at": "TIMESTAMP WITH TIME ZONE",
        "kind": "VARCHAR",
        "fan": "UBIGINT",
        "hold": "UBIGINT",
        "order": "UBIGINT",
        "seats": "BIGINT",
        "detail": "VARCHAR",
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--tickets", type=int)
    parser.add_argument("--orders", type=int)
    args = parser.parse_args()

    os.chdir(args.dir)
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    problems = []

    def one(sql):
        return db.execute(sql).fetchone()[0]

    counts = {name: one(f"SELECT count(*) FROM '{name}.parquet'") for name in FILES}
    print("rows: " + ", ".join(f"{name} {counts[name]}" for name in FILES))

    for name, expected in EXPECTED_TYPES.items():
        found = {
            row[0]: row[1]
            for row in db.execute(f"DESCRIBE SELECT * FROM '{name}.parquet'").fetchall()
        }
        if found != expected:
            problems.append(f"{name}.parquet types: {found}, expected {expected}")

    if args.tickets is not None and counts["tickets"] != args.tickets:
        problems.append(f"tickets: {counts['tickets']} rows, the exporter said {args.tickets}")
    if args.orders is not None and counts["orders"] != args.orders:
        problems.append(f"orders: {counts['orders']} rows, the exporter said {args.orders}")

    seats = one("SELECT coalesce(sum(seats), 0) FROM 'orders.parquet'")
    if seats != counts["tickets"]:
        problems.append(f"orders hold {seats} seats, tickets {counts['tickets']}")
    wrong_totals = one(
        """
        SELECT count(*) FROM 'orders.parquet' o
        JOIN (SELECT "order", count(*) AS n, sum(price_cents) AS cents
              FROM 'tickets.parquet' GROUP BY "order") t USING ("order")
        WHERE o.seats <> t.n OR o.total_cents <> t.cents
        """
    )
    if wrong_totals:
        problems.append(f"{wrong_totals} orders disagree with their tickets")
    not_admitted = one(
        """
        SELECT count(*) FROM 'orders.parquet'
        WHERE fan NOT IN (SELECT fan FROM 'admissions.parquet')
        """
    )
    if not_admitted:
        problems.append(f"{not_admitted} buyers missing from admissions")
    first_seq = one("SELECT min(seq) FROM 'timeline.parquet'")
    sold = one("SELECT count(*) FROM 'timeline.parquet' WHERE kind = 'sold'")
    if first_seq == 1 and sold != counts["orders"]:
        problems.append(f"the whole journal has {sold} sales, orders {counts['orders']}")

    print("README query (first 10 rows):")
    for row in db.execute(README_QUERY).fetchall()[:10]:
        print("  ", row)

    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

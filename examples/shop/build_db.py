"""Build the demo database `shop.sqlite`: a small online shop with the habits of a real legacy schema.

Its conventions are nowhere in the schema, only in the data, and every question needs one or two of them:
money in integer cents, one-letter order status codes, two-letter category and ISO country codes, city
names in capitals, days as integers `yyyymmdd`, a `Y`/`N` loyalty flag. A model meeting the database for
the first time gets many questions wrong; a prompt that has learnt the conventions from its failures gets
them right, on questions it never saw. That is what the demo shows.

Deterministic: the same code yields a byte-identical file (seeded RNG, fixed page size, no timestamps,
written to a temporary file then renamed). Usage: `python examples/shop/build_db.py [PATH]`.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import sys
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent / "shop.sqlite"

SCHEMA = """
CREATE TABLE suppliers (
  supplier_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  country_code TEXT NOT NULL
);
CREATE TABLE products (
  product_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  category_code TEXT NOT NULL,
  price_cents INTEGER NOT NULL,
  stock INTEGER NOT NULL,
  supplier_id INTEGER NOT NULL REFERENCES suppliers(supplier_id),
  is_active INTEGER NOT NULL
);
CREATE TABLE customers (
  customer_id INTEGER PRIMARY KEY,
  first_name TEXT NOT NULL,
  last_name TEXT NOT NULL,
  email TEXT,
  city TEXT NOT NULL,
  country_code TEXT NOT NULL,
  signup_day INTEGER NOT NULL,
  loyalty TEXT NOT NULL
);
CREATE TABLE orders (
  order_id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  order_day INTEGER NOT NULL,
  status_code TEXT NOT NULL,
  ship_fee_cents INTEGER NOT NULL
);
CREATE TABLE order_items (
  order_id INTEGER NOT NULL REFERENCES orders(order_id),
  product_id INTEGER NOT NULL REFERENCES products(product_id),
  quantity INTEGER NOT NULL,
  unit_price_cents INTEGER NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
CREATE TABLE reviews (
  review_id INTEGER PRIMARY KEY,
  product_id INTEGER NOT NULL REFERENCES products(product_id),
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  stars INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
  comment TEXT,
  review_day INTEGER NOT NULL
);
CREATE INDEX idx_orders_customer ON orders(customer_id);
CREATE INDEX idx_items_product ON order_items(product_id);
CREATE INDEX idx_reviews_product ON reviews(product_id);
"""

# the conventions (documented here for people; the database itself says nothing about them)
CATEGORIES = {"BK": "Books", "EL": "Electronics", "HK": "Home & Kitchen", "SP": "Sports", "TY": "Toys",
              "CL": "Clothing", "BT": "Beauty"}
STATUS = {"P": "pending", "S": "shipped", "D": "delivered", "C": "cancelled", "R": "returned"}
COUNTRIES = {"US": "United States", "GB": "United Kingdom", "DE": "Germany", "FR": "France", "NO": "Norway",
             "SE": "Sweden", "ES": "Spain", "JP": "Japan", "CA": "Canada"}

SUPPLIERS = [
    ("Nordic Goods AB", "SE"), ("Rhein Elektronik GmbH", "DE"), ("Pacific Paper Co.", "US"),
    ("Maple Outdoor Ltd.", "CA"), ("Atelier Lumiere", "FR"), ("Berlin Spielwaren", "DE"),
    ("Thames Textiles", "GB"), ("Sakura Beauty", "JP"),
]

# (name, category code, price in cents, supplier id)
CATALOG = [
    ("Wireless Mouse", "EL", 2499, 2), ("Mechanical Keyboard", "EL", 8999, 2), ("USB-C Charger", "EL", 1999, 1),
    ("Bluetooth Speaker", "EL", 5999, 1), ("Noise-Cancelling Headphones", "EL", 24900, 2),
    ("27-inch Monitor", "EL", 29900, 2), ("Webcam HD", "EL", 4950, 1), ("Smartwatch", "EL", 19900, 2),
    ("Portable SSD 1TB", "EL", 11900, 2),
    ("The Art of SQL", "BK", 3495, 3), ("Learning Python", "BK", 4499, 3), ("Data Science Handbook", "BK", 3990, 3),
    ("Mystery at Midnight", "BK", 999, 3), ("Cooking for Two", "BK", 1450, 5), ("World Atlas", "BK", 2900, 3),
    ("Poems of the Sea", "BK", 1275, 5),
    ("Chef Knife", "HK", 6400, 1), ("Cast Iron Pan", "HK", 3999, 1), ("French Press", "HK", 2750, 5),
    ("Ceramic Mug Set", "HK", 2200, 5), ("Desk Lamp", "HK", 4500, 5), ("Wool Blanket", "HK", 7900, 7),
    ("Yoga Mat", "SP", 2500, 4), ("Trail Running Shoes", "SP", 12900, 4), ("Camping Tent", "SP", 21900, 4),
    ("Water Bottle", "SP", 1599, 1), ("Cycling Helmet", "SP", 6900, 4), ("Dumbbell Pair", "SP", 5400, 4),
    ("Wooden Train Set", "TY", 4900, 6), ("Puzzle 1000 Pieces", "TY", 1899, 6), ("Building Blocks", "TY", 3400, 6),
    ("Plush Bear", "TY", 1650, 6), ("Board Game Classic", "TY", 2999, 3),
    ("Rain Jacket", "CL", 8900, 7), ("Merino Sweater", "CL", 9500, 7), ("Denim Jeans", "CL", 5900, 7),
    ("Cotton T-Shirt", "CL", 1499, 7), ("Winter Gloves", "CL", 2100, 4), ("Silk Scarf", "CL", 6500, 5),
    ("Face Cream", "BT", 3200, 8), ("Shampoo", "BT", 849, 8), ("Lip Balm", "BT", 499, 8),
    ("Reading Glasses", "BT", 1900, 8),
]

CITIES = [
    ("NEW YORK", "US"), ("CHICAGO", "US"), ("SEATTLE", "US"), ("LONDON", "GB"), ("MANCHESTER", "GB"),
    ("BERLIN", "DE"), ("MUNICH", "DE"), ("PARIS", "FR"), ("LYON", "FR"), ("OSLO", "NO"), ("BERGEN", "NO"),
    ("STOCKHOLM", "SE"), ("MADRID", "ES"), ("TOKYO", "JP"), ("TORONTO", "CA"),
]
FIRST = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Hugo", "Lena", "Mateo",
         "Chloe", "Finn", "Yuki", "Elias", "Clara", "Oscar", "Ines", "Jonas", "Maya", "Arthur", "Nora", "Theo"]
LAST = ["Smith", "Johnson", "Brown", "Schmidt", "Mueller", "Martin", "Bernard", "Garcia", "Lopez", "Tanaka",
        "Wilson", "Taylor", "Dubois", "Fischer", "Andersson", "Walker", "Roy", "Sato", "Moreno", "Hansen"]
STATUS_MIX = ["D"] * 10 + ["S"] * 3 + ["P"] * 2 + ["C"] * 3 + ["R"] * 2
GOOD = ["Great quality, would buy again.", "Exactly as described.", "Fast delivery and well packed.", "Love it!"]
MEH = ["Okay for the price.", "Does the job, nothing special."]
BAD = ["Broke after a week.", "Not as described.", "Would not recommend."]

START = dt.date(2023, 1, 1)
END = dt.date(2024, 12, 31)


def _day(rng: random.Random, lo: dt.date, hi: dt.date) -> dt.date:
    return lo + dt.timedelta(days=rng.randint(0, (hi - lo).days))


def _int_day(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def _rows(rng: random.Random) -> dict[str, list[tuple]]:
    """Every table's rows, generated in a fixed order from one seeded RNG."""
    suppliers = [(i + 1, *s) for i, s in enumerate(SUPPLIERS)]
    products = []
    for name, category, cents, supplier in CATALOG:
        stock = rng.choice([0, 0, 5, 12, 25, 40, 60, 80, 120, 150])
        active = 0 if rng.random() < 0.12 else 1
        products.append((len(products) + 1, name, category, cents, stock, supplier, active))

    customers = []
    seen: set[tuple[str, str]] = set()
    while len(customers) < 140:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if (first, last) in seen:
            continue
        seen.add((first, last))
        city, country = rng.choice(CITIES)
        cid = len(customers) + 1
        email = None if rng.random() < 0.15 else f"{first}.{last}{cid}@example.com".lower()
        signup = _day(rng, dt.date(2022, 6, 1), dt.date(2024, 10, 31))
        loyalty = "Y" if rng.random() < 0.3 else "N"
        customers.append((cid, first, last, email, city, country, _int_day(signup), loyalty))

    buyers = [c for c in customers if rng.random() > 0.12]
    sellable = [p for p in products if p[0] % 11 != 0]  # a few products never sell
    orders, items = [], []
    for oid in range(1, 361):
        cust = rng.choice(buyers)
        signup = dt.date(cust[6] // 10000, cust[6] // 100 % 100, cust[6] % 100)
        day = _day(rng, max(signup, START), END)
        status = rng.choice(STATUS_MIX)
        if day > dt.date(2024, 12, 20) and status in ("D", "R"):
            status = "S"
        fee = rng.choice([0, 0, 499, 499, 999])
        orders.append((oid, cust[0], _int_day(day), status, fee))
        for prod in rng.sample(sellable, rng.choice([1, 1, 2, 2, 3, 4])):
            items.append((oid, prod[0], rng.choice([1, 1, 1, 2, 2, 3, 5]), prod[3]))

    reviews = []
    delivered = [o for o in orders if o[3] == "D"]
    for order in rng.sample(delivered, 150):
        for oid, pid, _qty, _price in items:
            if oid != order[0] or rng.random() < 0.3:
                continue
            stars = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 4, 5])[0]
            pool = BAD if stars <= 2 else MEH if stars == 3 else GOOD
            comment = None if rng.random() < 0.35 else rng.choice(pool)
            placed = dt.date(order[2] // 10000, order[2] // 100 % 100, order[2] % 100)
            reviews.append((len(reviews) + 1, pid, order[1], stars, comment,
                            _int_day(placed + dt.timedelta(days=rng.randint(3, 30)))))
    reviews.sort(key=lambda r: (r[5], r[0]))
    reviews = [(i + 1, *r[1:]) for i, r in enumerate(reviews)]
    return {"suppliers": suppliers, "products": products, "customers": customers, "orders": orders,
            "order_items": items, "reviews": reviews}


def build(path: str | os.PathLike[str] = DEFAULT_PATH) -> Path:
    """Write the shop database to `path` (replacing it atomically) and return the path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tables = _rows(random.Random(0))
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    for stale in (tmp, tmp + "-journal"):
        if os.path.exists(stale):
            os.unlink(stale)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA page_size = 4096")
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, rows in tables.items():
                marks = ", ".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            conn.execute("COMMIT")
            conn.execute("VACUUM")
        finally:
            conn.close()
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, tmp + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = build(args[0]) if args else build()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the demo database `shop.sqlite`: a small online shop, generated from code.

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
  country TEXT NOT NULL,
  contact_email TEXT
);
CREATE TABLE products (
  product_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  category TEXT NOT NULL,
  price REAL NOT NULL,
  stock INTEGER NOT NULL,
  supplier_id INTEGER NOT NULL REFERENCES suppliers(supplier_id),
  discontinued INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE customers (
  customer_id INTEGER PRIMARY KEY,
  first_name TEXT NOT NULL,
  last_name TEXT NOT NULL,
  email TEXT,
  phone TEXT,
  city TEXT NOT NULL,
  country TEXT NOT NULL,
  signup_date TEXT NOT NULL
);
CREATE TABLE employees (
  employee_id INTEGER PRIMARY KEY,
  first_name TEXT NOT NULL,
  last_name TEXT NOT NULL,
  title TEXT NOT NULL,
  hire_date TEXT NOT NULL,
  manager_id INTEGER REFERENCES employees(employee_id)
);
CREATE TABLE orders (
  order_id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  employee_id INTEGER REFERENCES employees(employee_id),
  order_date TEXT NOT NULL,
  status TEXT NOT NULL,
  shipped_date TEXT,
  shipping_fee REAL NOT NULL
);
CREATE TABLE order_items (
  order_id INTEGER NOT NULL REFERENCES orders(order_id),
  product_id INTEGER NOT NULL REFERENCES products(product_id),
  quantity INTEGER NOT NULL,
  unit_price REAL NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
CREATE TABLE reviews (
  review_id INTEGER PRIMARY KEY,
  product_id INTEGER NOT NULL REFERENCES products(product_id),
  customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
  rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
  comment TEXT,
  review_date TEXT NOT NULL
);
CREATE INDEX idx_orders_customer ON orders(customer_id);
CREATE INDEX idx_items_product ON order_items(product_id);
CREATE INDEX idx_reviews_product ON reviews(product_id);
"""

SUPPLIERS = [
    ("Nordic Goods AB", "Sweden", "sales@nordicgoods.se"),
    ("Rhein Elektronik GmbH", "Germany", "info@rhein-elektronik.de"),
    ("Pacific Paper Co.", "USA", None),
    ("Maple Outdoor Ltd.", "Canada", "hello@mapleoutdoor.ca"),
    ("Atelier Lumière", "France", "contact@atelier-lumiere.fr"),
    ("Berlin Spielwaren", "Germany", None),
    ("Thames Textiles", "UK", "orders@thamestextiles.co.uk"),
    ("Sakura Beauty", "Japan", "support@sakurabeauty.jp"),
]

# (name, category, price, supplier_id)
CATALOG = [
    ("Wireless Mouse", "Electronics", 24.99, 2), ("Mechanical Keyboard", "Electronics", 89.99, 2),
    ("USB-C Charger", "Electronics", 19.99, 1), ("Bluetooth Speaker", "Electronics", 59.99, 1),
    ("Noise-Cancelling Headphones", "Electronics", 249.0, 2), ("27-inch Monitor", "Electronics", 299.0, 2),
    ("Webcam HD", "Electronics", 49.5, 1), ("Smartwatch", "Electronics", 199.0, 2),
    ("Portable SSD 1TB", "Electronics", 119.0, 2),
    ("The Art of SQL", "Books", 34.95, 3), ("Learning Python", "Books", 44.99, 3),
    ("Data Science Handbook", "Books", 39.9, 3), ("Mystery at Midnight", "Books", 9.99, 3),
    ("Cooking for Two", "Books", 14.5, 5), ("World Atlas", "Books", 29.0, 3), ("Poems of the Sea", "Books", 12.75, 5),
    ("Chef Knife", "Home & Kitchen", 64.0, 1), ("Cast Iron Pan", "Home & Kitchen", 39.99, 1),
    ("French Press", "Home & Kitchen", 27.5, 5), ("Ceramic Mug Set", "Home & Kitchen", 22.0, 5),
    ("Desk Lamp", "Home & Kitchen", 45.0, 5), ("Wool Blanket", "Home & Kitchen", 79.0, 7),
    ("Yoga Mat", "Sports", 25.0, 4), ("Trail Running Shoes", "Sports", 129.0, 4), ("Camping Tent", "Sports", 219.0, 4),
    ("Water Bottle", "Sports", 15.99, 1), ("Cycling Helmet", "Sports", 69.0, 4), ("Dumbbell Pair", "Sports", 54.0, 4),
    ("Wooden Train Set", "Toys", 49.0, 6), ("Puzzle 1000 Pieces", "Toys", 18.99, 6), ("Building Blocks", "Toys", 34.0, 6),
    ("Plush Bear", "Toys", 16.5, 6), ("Board Game Classic", "Toys", 29.99, 3),
    ("Rain Jacket", "Clothing", 89.0, 7), ("Merino Sweater", "Clothing", 95.0, 7), ("Denim Jeans", "Clothing", 59.0, 7),
    ("Cotton T-Shirt", "Clothing", 14.99, 7), ("Winter Gloves", "Clothing", 21.0, 4),
    ("Face Cream", "Beauty", 32.0, 8), ("Shampoo", "Beauty", 8.49, 8), ("Lip Balm", "Beauty", 4.99, 8),
    ("Silk Scarf", "Clothing", 65.0, 5), ("Reading Glasses", "Beauty", 19.0, 8),
]

CITIES = [
    ("New York", "USA"), ("Chicago", "USA"), ("Austin", "USA"), ("Seattle", "USA"),
    ("London", "UK"), ("Manchester", "UK"), ("Berlin", "Germany"), ("Munich", "Germany"), ("Hamburg", "Germany"),
    ("Paris", "France"), ("Lyon", "France"), ("Toronto", "Canada"), ("Vancouver", "Canada"),
    ("Madrid", "Spain"), ("Barcelona", "Spain"), ("Tokyo", "Japan"), ("Stockholm", "Sweden"),
]
FIRST = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Hugo", "Lena", "Mateo",
         "Chloe", "Finn", "Yuki", "Elias", "Clara", "Oscar", "Ines", "Jonas", "Maya", "Arthur", "Nora", "Theo"]
LAST = ["Smith", "Johnson", "Brown", "Schmidt", "Müller", "Martin", "Bernard", "Garcia", "Lopez", "Tanaka",
        "Wilson", "Taylor", "Dubois", "Fischer", "Andersson", "Walker", "Roy", "Sato", "Moreno", "Clark"]
EMPLOYEES = [  # (first, last, title, hire_date, manager index)
    ("Grace", "Hopper", "Head of Sales", "2019-02-11", None),
    ("Alan", "Turing", "Sales Manager", "2020-05-04", 0),
    ("Ada", "Lovelace", "Sales Manager", "2020-09-21", 0),
    ("Edsger", "Dijkstra", "Sales Representative", "2021-01-18", 1),
    ("Barbara", "Liskov", "Sales Representative", "2021-06-07", 1),
    ("Donald", "Knuth", "Sales Representative", "2022-03-14", 1),
    ("Frances", "Allen", "Sales Representative", "2022-08-29", 2),
    ("Ken", "Thompson", "Sales Representative", "2023-01-09", 2),
    ("Margaret", "Hamilton", "Support Specialist", "2023-04-17", None),
    ("Dennis", "Ritchie", "Sales Representative", "2023-11-06", 2),
]
STATUSES = ["delivered"] * 11 + ["shipped"] * 3 + ["pending"] * 2 + ["cancelled"] * 2 + ["returned"]
GOOD = ["Great quality, would buy again.", "Exactly as described.", "Fast delivery and well packed.",
        "Love it!", "Works perfectly."]
MEH = ["Okay for the price.", "Does the job, nothing special.", "Arrived a bit late."]
BAD = ["Broke after a week.", "Not as described.", "Poor quality, returned it.", "Would not recommend."]

START = dt.date(2023, 1, 1)
END = dt.date(2024, 12, 31)


def _day(rng: random.Random, lo: dt.date, hi: dt.date) -> dt.date:
    return lo + dt.timedelta(days=rng.randint(0, (hi - lo).days))


def _rows(rng: random.Random) -> dict[str, list[tuple]]:
    """Every table's rows, generated in a fixed order from one seeded RNG."""
    suppliers = [(i + 1, *s) for i, s in enumerate(SUPPLIERS)]

    products = []
    for name, category, price, supplier in CATALOG:
        stock = rng.choice([0, 0, 5, 12, 25, 40, 60, 80, 120, 150])
        discontinued = 1 if rng.random() < 0.1 else 0
        products.append((len(products) + 1, name, category, price, stock, supplier, discontinued))

    customers = []
    seen: set[tuple[str, str]] = set()
    while len(customers) < 120:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if (first, last) in seen:
            continue
        seen.add((first, last))
        city, country = rng.choice(CITIES)
        cid = len(customers) + 1
        handle = f"{first}.{last}".lower().replace("ü", "ue")
        email = None if rng.random() < 0.15 else f"{handle}{cid}@example.com"
        phone = None if rng.random() < 0.3 else f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
        signup = _day(rng, dt.date(2022, 6, 1), dt.date(2024, 10, 31))
        customers.append((cid, first, last, email, phone, city, country, signup.isoformat()))

    employees = [(i + 1, f, la, t, h, None if m is None else m + 1) for i, (f, la, t, h, m) in enumerate(EMPLOYEES)]
    sales_reps = [e[0] for e in employees if e[3] == "Sales Representative"]

    # About one customer in eight never orders; a few products are never sold.
    buyers = [c for c in customers if rng.random() > 0.12]
    sellable = [p for p in products if p[0] % 11 != 0]
    orders, items = [], []
    for oid in range(1, 301):
        cust = rng.choice(buyers)
        signup = dt.date.fromisoformat(cust[7])
        order_date = _day(rng, max(signup, START), END)
        status = rng.choice(STATUSES)
        if order_date > dt.date(2024, 12, 20) and status in ("delivered", "returned"):
            status = "shipped"
        shipped = None
        if status in ("shipped", "delivered", "returned"):
            shipped = (order_date + dt.timedelta(days=rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12]))).isoformat()
        employee = rng.choice(sales_reps) if rng.random() < 0.7 else None
        fee = rng.choice([0.0, 0.0, 4.99, 4.99, 9.99])
        orders.append((oid, cust[0], employee, order_date.isoformat(), status, shipped, fee))
        for prod in rng.sample(sellable, rng.choice([1, 1, 2, 2, 3, 4])):
            items.append((oid, prod[0], rng.choice([1, 1, 1, 2, 2, 3, 5]), prod[3]))

    reviews = []
    delivered = [o for o in orders if o[4] == "delivered"]
    for order in rng.sample(delivered, 150):
        for oid, pid, _qty, _price in items:
            if oid != order[0] or rng.random() < 0.3:
                continue
            rating = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 4, 5])[0]
            pool = BAD if rating <= 2 else MEH if rating == 3 else GOOD
            comment = None if rng.random() < 0.35 else rng.choice(pool)
            day = dt.date.fromisoformat(order[5]) + dt.timedelta(days=rng.randint(2, 30))
            reviews.append((len(reviews) + 1, pid, order[1], rating, comment, day.isoformat()))
    reviews.sort(key=lambda r: (r[5], r[0]))
    reviews = [(i + 1, *r[1:]) for i, r in enumerate(reviews)]

    return {"suppliers": suppliers, "products": products, "customers": customers, "employees": employees,
            "orders": orders, "order_items": items, "reviews": reviews}


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

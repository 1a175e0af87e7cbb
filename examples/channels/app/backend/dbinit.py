"""What the seed's postgres image does with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB:
make that role (or set its password) and a database it owns. Run as grove's administrator
(ADMIN_URL), once before the migrations; safe to run again."""
import os

import psycopg2
from psycopg2 import sql

user, password, db = (os.environ[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"))
conn = psycopg2.connect(os.environ["ADMIN_URL"])
conn.autocommit = True
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
    if not cur.fetchone():
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(user)))
    cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db)))
print(f"dbinit: role {user} and database {db} ready", flush=True)

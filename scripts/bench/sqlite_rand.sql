-- sqlite3: build a 200k-row table with an index on random strings (32 hex digits), in
-- memory, then query it. Unlike sqlite.sql's names, the keys arrive in random order.
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, hex(randomblob(16)), x * 0.5 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(val) FROM t WHERE name LIKE 'A%';

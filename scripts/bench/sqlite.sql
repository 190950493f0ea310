-- sqlite3: build a 200k-row table with an index in memory, then query it.
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, 'name-' || (x * 7919 % 200000), x * 0.5 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(val) FROM t WHERE name LIKE 'name-1%';

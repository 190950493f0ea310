-- A small sqlite3 workload for the unwinder check: an indexed table and a query.
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
INSERT INTO t SELECT x, 'name-' || (x * 7919 % 5000), x * 0.5 FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(val) FROM t WHERE name LIKE 'name-1%';

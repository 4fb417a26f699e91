CREATE TABLE cat_t (id int PRIMARY KEY, name varchar(20) NOT NULL DEFAULT 0, n numeric(10,2) UNIQUE);
CREATE INDEX cat_t_name ON cat_t (name);
CREATE TABLE cat_c (id bigint PRIMARY KEY, t int REFERENCES cat_t ON DELETE CASCADE, note text, at timestamptz, CHECK (id > 0));
CREATE VIEW cat_v AS SELECT id, name FROM cat_t;
CREATE SEQUENCE cat_s CACHE 1;

"""State in Postgres: the database and its migrations (`database`, `migrations`, `embedded`), and
one module per group of tables. SQL lives here and in `migrations/*.sql`, nowhere else."""

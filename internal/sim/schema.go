package sim

import _ "embed"

// Schema is the default source schema of SPEC §2 (merchants, payments,
// payment_cancels with the indexes a gateway has) plus the simulator's own
// sim_meta table. Every statement is idempotent.
//
//go:embed schema.sql
var Schema string

// MySQLSchema is Schema for a MySQL or MariaDB source, statements
// separated by ";" (the MySQL protocol runs one at a time).
//
//go:embed schema_mysql.sql
var MySQLSchema string

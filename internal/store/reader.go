package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// readerGrants are the grants EnsureReaderRole makes (README, "Grafana",
// prints the same SQL for a DBA who would rather run it by hand). Default
// privileges cover the tables that later migrations create, as long as the
// same user runs them.
func readerGrants(role, schema string) []string {
	r, s := pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()
	return []string{
		fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", s, r),
		fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s", s, r),
		fmt.Sprintf("ALTER DEFAULT PRIVILEGES IN SCHEMA %s GRANT SELECT ON TABLES TO %s", s, r),
	}
}

// EnsureReaderRole creates the role when it does not exist and
// grants it SELECT on every table of the sink schema, present and future,
// and nothing else. Running it again changes nothing; an existing role
// keeps its attributes (a DBA may have made it a login role). It reports
// whether the role was created. A new role is a group (NOLOGIN) so that no
// password lives with riskwatch; a login user (Grafana's) is made a member.
func (d *DB) EnsureReaderRole(ctx context.Context, role string) (created bool, err error) {
	if err := validRoleName(role); err != nil {
		return false, err
	}
	err = d.Tx(ctx, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
			return fmt.Errorf("looking up role %s: %w", role, err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE ROLE %s NOLOGIN", pgx.Identifier{role}.Sanitize())); err != nil {
				return fmt.Errorf("creating role %s (the sink user needs CREATEROLE): %w", role, err)
			}
			created = true
		}
		for _, stmt := range readerGrants(role, d.schemaName) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("granting role %s read access to schema %s: %w", role, d.schemaName, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// validRoleName refuses names PostgreSQL reserves or that could only be a
// typo; any other name is quoted, so it needs no further checks.
func validRoleName(role string) error {
	switch {
	case role == "":
		return errors.New("reader role: empty name")
	case strings.HasPrefix(strings.ToLower(role), "pg_"):
		return fmt.Errorf("reader role %q: names starting with pg_ are reserved by PostgreSQL", role)
	case len(role) > 63:
		return fmt.Errorf("reader role %q: longer than PostgreSQL's 63 bytes", role)
	case strings.ContainsRune(role, 0):
		return fmt.Errorf("reader role %q: contains a NUL byte", role)
	}
	return nil
}

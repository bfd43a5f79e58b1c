package mysqltest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

var server *Server

func TestMain(m *testing.M) { os.Exit(Main(m, &server)) }

func TestNewDB(t *testing.T) {
	var name string
	t.Run("sub", func(t *testing.T) {
		dsn := server.NewDB(t)
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		name = strings.TrimPrefix(u.Path, "/")
		if !strings.HasPrefix(name, "testnewdb_sub_") {
			t.Errorf("database %s is not named after the test", name)
		}
		if err := server.Exec(context.Background(), name, "CREATE TABLE t (id BIGINT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := server.Query(ctx, "", "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := r.GetInt(0, 0); n != 0 {
		t.Errorf("database %s survived its test", name)
	}
}

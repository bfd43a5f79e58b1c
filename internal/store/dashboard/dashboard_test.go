package dashboard

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/riskwatch/riskwatch/internal/pgtest"
	"github.com/riskwatch/riskwatch/internal/store"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

func openStore(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cluster.NewDB(t), "rw_sink", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return New(db)
}

// TestMerchantDirectory: new and renamed merchants are written, unchanged
// ones are not; search finds an exact id first, then names by substring,
// case-insensitively, and treats % and _ as plain text.
func TestMerchantDirectory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t)
	n, err := s.UpsertMerchants(ctx, []Merchant{{1, "Acme Books"}, {2, "acme_shoes"}, {12, "Zeta 100% Co"}, {3, "<img src=x onerror=alert(1)>"}})
	if err != nil || n != 4 {
		t.Fatalf("first upsert: %d %v", n, err)
	}
	n, err = s.UpsertMerchants(ctx, []Merchant{{1, "Acme Books"}, {2, "ACME Shoes"}})
	if err != nil || n != 1 {
		t.Fatalf("second upsert wrote %d rows (%v); want only the renamed one", n, err)
	}
	search := func(q string, id int64) []Merchant {
		ms, err := s.SearchMerchants(ctx, q, id, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	if got := search("acme", -1); len(got) != 2 || got[0] != (Merchant{2, "ACME Shoes"}) || got[1] != (Merchant{1, "Acme Books"}) {
		t.Errorf("search acme = %v", got)
	}
	if got := search("1", 1); len(got) != 3 || got[0].ID != 1 || got[1].ID != 3 || got[2].ID != 12 {
		t.Errorf("search 1 = %v; want id 1 first, then the names containing 1 by name", got)
	}
	if got := search("%", -1); len(got) != 1 || got[0].ID != 12 {
		t.Errorf("search %% = %v; want only the name with a percent sign", got)
	}
	if got := search("_", -1); len(got) != 0 {
		t.Errorf("search _ = %v; want none (the underscore was renamed away)", got)
	}
	names, err := s.MerchantNames(ctx, []int64{3, 99})
	if err != nil || len(names) != 1 || names[3] != "<img src=x onerror=alert(1)>" {
		t.Errorf("names = %v %v", names, err)
	}
}

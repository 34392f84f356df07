package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestBolt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx Tx) error {
		for _, k := range []string{"cal/b", "cal/a", "tok/x"} {
			if err := tx.Put("main", k, []byte(k)); err != nil {
				return err
			}
		}
		return PutJSON(tx, "json", "k", map[string]int{"n": 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failing update leaves nothing behind.
	boom := errors.New("boom")
	if err := s.Update(ctx, func(tx Tx) error {
		if err := tx.Put("main", "cal/c", nil); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	must(t, s.Close())

	s, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, s.Close()) }()
	err = s.View(ctx, func(tx Tx) error {
		var keys []string
		if err := tx.ForEach("main", "cal/", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
			return err
		}
		if len(keys) != 2 || keys[0] != "cal/a" || keys[1] != "cal/b" {
			t.Fatalf("keys %v", keys)
		}
		if _, err := tx.Get("main", "cal/c"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rolled-back key: %v", err)
		}
		if _, err := tx.Get("nobucket", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		var m map[string]int
		if err := GetJSON(tx, "json", "k", &m); err != nil || m["n"] != 1 {
			t.Fatalf("GetJSON %v %v", m, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Update(ctxDone, func(Tx) error { return nil }); err == nil {
		t.Fatal("update ran with a cancelled context")
	}
}

// must fails the test at once on the error of a step it cannot go on
// without (its setup).
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

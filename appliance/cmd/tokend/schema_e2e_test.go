package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
)

// TestServeRefusesNewerSchema: a store written by a newer tokend (schema
// version 99) is refused at start with a one-line message saying so.
func TestServeRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	if err := startTokend(t, dir).stop(); err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put([]byte("meta/schema"), []byte("99")) })
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	a := newApp(strings.NewReader(""), &out, &out, func(string) (string, bool) { return "", false })
	// A tokend that starts anyway is stopped, not waited for.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := a.execute(ctx, []string{"serve", "--data-dir", dir, "--admin-listen", "127.0.0.1:0", "--ctkip-listen", "127.0.0.1:0"})
	want := regexp.MustCompile(`tokend: init store: the store was written by a newer tokend \(schema version 99; this tokend reads \d+\): ` +
		`run that tokend version or a later one, or restore a backup taken before the upgrade: invalid state\n$`)
	if code != 1 || !want.MatchString(out.String()) {
		t.Errorf("exit %d, output:\n%s\nwant it to end with:\n%s", code, out.String(), want)
	}
}

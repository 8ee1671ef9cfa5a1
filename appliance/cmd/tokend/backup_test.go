package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBackupUnderLoadAndRestore takes a hot backup of a running tokend while
// users are being created, restores it into a fresh data dir (with the
// master key copied separately, as the README says) and serves from it.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	userID, _ := seedProcedure(t, in)

	ctx, stop := context.WithCancel(context.Background())
	var created atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"user_name":"load-%d-%d"}`, w, i)
				req, _ := http.NewRequest("POST", in.admin+"/api/v1/users", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+in.token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := in.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("create user: %d", resp.StatusCode)
					return
				}
				created.Add(1)
			}
		})
	}
	for created.Load() < 20 && !t.Failed() {
		time.Sleep(10 * time.Millisecond) // let the writers get going
	}
	out := filepath.Join(t.TempDir(), "tokend.backup")
	var buf bytes.Buffer
	a := newApp(strings.NewReader(""), &buf, &buf, func(string) (string, bool) { return "", false })
	code := a.execute(context.Background(), []string{"backup", "--data-dir", dir, "--admin-listen", strings.TrimPrefix(in.admin, "https://"), "--out", out})
	stop()
	wg.Wait()
	if code != 0 {
		t.Fatalf("backup: %s", buf.String())
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}

	fresh := filepath.Join(t.TempDir(), "restored")
	buf.Reset()
	if code := a.execute(context.Background(), []string{"restore", "--data-dir", fresh, "--in", out}); code != 0 {
		t.Fatalf("restore: %s", buf.String())
	}
	key, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, "master.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	// Restoring over a store needs --force.
	buf.Reset()
	if code := a.execute(context.Background(), []string{"restore", "--data-dir", fresh, "--in", out}); code == 0 || !strings.Contains(buf.String(), "--force") {
		t.Fatalf("restore over an existing store: %d %s", code, buf.String())
	}
	back := startTokend(t, fresh)
	var user struct {
		UserName string `json:"user_name"`
		Tokens   []struct {
			Serial string `json:"serial"`
		} `json:"tokens"`
	}
	back.call(t, "GET", "/api/v1/users/"+userID, "", nil, http.StatusOK, &user)
	if user.UserName != "alice" || len(user.Tokens) != 3 {
		t.Fatalf("restored user = %+v", user)
	}
	var users struct {
		Total int `json:"total"`
	}
	back.call(t, "GET", "/api/v1/users?limit=1", "", nil, http.StatusOK, &users)
	if users.Total < 21 {
		t.Fatalf("restored %d users, want alice and the load users created before the backup", users.Total)
	}
	// A restore refuses while a tokend runs on the data dir.
	buf.Reset()
	if code := a.execute(context.Background(), []string{"restore", "--data-dir", fresh, "--in", out, "--force"}); code == 0 || !strings.Contains(buf.String(), "running tokend") {
		t.Fatalf("restore under a running tokend: %d %s", code, buf.String())
	}
}

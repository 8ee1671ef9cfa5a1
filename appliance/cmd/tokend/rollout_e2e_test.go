package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/internal/boltstore"
	"tokend/appliance/seal"
)

// cutStore lets the first `left` Updates through and fails the rest, as a
// process that dies between two rollout chunks: nothing after is written.
type cutStore struct {
	appliance.Store
	left atomic.Int64
}

var errCut = errors.New("power cut")

func (s *cutStore) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if s.left.Add(-1) < 0 {
		return errCut
	}
	return s.Store.Update(context.WithoutCancel(ctx), fn)
}

// TestRolloutResumedAtStart: a rollout whose apply died between chunks
// (its record still says applying) is marked interrupted and finished by
// the next start of tokend, with no user given two tokens, and the metric
// counts what the resumed run did.
func TestRolloutResumedAtStart(t *testing.T) {
	dir := t.TempDir()
	in := startTokend(t, dir)
	var b strings.Builder
	b.WriteString("serial\n")
	for i := range 40 {
		fmt.Fprintf(&b, "%012d\n", 170000000000+i)
	}
	in.call(t, "POST", "/api/v1/tokens/import?format=csv", "text/csv", strings.NewReader(b.String()), http.StatusCreated, nil)
	in.call(t, "POST", "/api/v1/profiles", "application/json",
		strings.NewReader(`{"name":"phones","device_type":"android","delivery_method":"ctkip"}`), http.StatusCreated, nil)
	var users []string
	for i := range 35 {
		var u struct {
			ID string `json:"id"`
		}
		in.call(t, "POST", "/api/v1/users", "application/json",
			strings.NewReader(fmt.Sprintf(`{"user_name":"user%02d"}`, i)), http.StatusCreated, &u)
		users = append(users, u.ID)
	}
	var plan struct {
		ID   string `json:"id"`
		Plan struct {
			ToAssign int `json:"to_assign"`
		} `json:"plan"`
	}
	in.call(t, "POST", "/api/v1/rollouts", "application/json", strings.NewReader(
		`{"users":["`+strings.Join(users, `","`)+`"],"profile":"phones","pool":{"serial_prefix":"17"},"delivery":"ctkip"}`),
		http.StatusCreated, &plan)
	if plan.Plan.ToAssign != 35 {
		t.Fatalf("plan %+v", plan)
	}
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}

	// The apply dies after its claim and one chunk.
	st, err := boltstore.Open(filepath.Join(dir, "tokend.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := readMasterKey(filepath.Join(dir, "master.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cut := &cutStore{Store: st}
	cut.left.Store(2)
	svc, err := appliance.New(appliance.Config{Store: cut, Sealer: sealer, CTKIPURL: in.ctkipURL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ApplyRollout(context.Background(), plan.ID); !errors.Is(err, errCut) {
		t.Fatalf("apply through the cut: %v", err)
	}
	// Which chunk got through is the workers' race: ten users, or the five
	// of the tail.
	mid, err := svc.GetRollout(context.Background(), plan.ID)
	if err != nil || (mid.Done != 10 && mid.Done != 5) {
		t.Fatalf("after the cut: %+v %v", mid, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	in = startTokend(t, dir)
	var r struct {
		State    string `json:"state"`
		Progress struct {
			Done, Failed int
		} `json:"progress"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		in.call(t, "GET", "/api/v1/rollouts/"+plan.ID+"?limit=1", "", nil, http.StatusOK, &r)
		if r.State == appliance.RolloutCompleted || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.State != appliance.RolloutCompleted || r.Progress.Done != 35 || r.Progress.Failed != 0 {
		t.Fatalf("after the restart: %+v\n%s", r, in.logs.String())
	}
	if !strings.Contains(in.logs.String(), "rollout resumed") {
		t.Errorf("no log line says the rollout was resumed")
	}
	for _, id := range users {
		var u struct {
			Tokens []struct {
				Serial string `json:"serial"`
			} `json:"tokens"`
		}
		in.call(t, "GET", "/api/v1/users/"+id, "", nil, http.StatusOK, &u)
		if len(u.Tokens) != 1 {
			t.Errorf("user %s holds %d tokens", id, len(u.Tokens))
		}
	}
	req, err := http.NewRequest("GET", in.admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := string(body)
	if want := fmt.Sprintf(`tokend_rollout_users_total{result="done"} %d`, 35-mid.Done); !strings.Contains(m, want) {
		t.Errorf("metric: %s", grepLines(m, "tokend_rollout_users_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestCTKIPSessionsInMemoryOnBolt: tokend on its own bbolt store keeps a
// CT-KIP session between the two POSTs in the door's memory. ClientHellos
// against the real serve path write nothing to the store (a stored session
// cost two durable commits per exchange and left the pinned core idle,
// issue 19), and the exchange still finishes once: the code is consumed
// and a second exchange with it is refused.
func TestCTKIPSessionsInMemoryOnBolt(t *testing.T) {
	in := startTokend(t, t.TempDir())
	_, d := seedProcedure(t, in)

	// Background work (a coalesced API-token last-use write, a purge) may
	// write in any one window; stored sessions would write in every window.
	// So the hellos must leave at least one of three windows without writes.
	var writes []float64
	for range 3 {
		before := storeWrites(t, in)
		for range 3 {
			rec := &bodyRecorder{base: in.client.Transport, stopAfter: 1}
			cl := ctkipClient(in)
			cl.HTTP = &http.Client{Transport: rec}
			if _, err := cl.Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err == nil {
				t.Fatal("the exchange finished without its second POST")
			}
			if rec.n != 2 {
				t.Fatalf("%d requests, want the hello and the refused second", rec.n)
			}
		}
		got := storeWrites(t, in) - before
		if got == 0 {
			writes = nil
			break
		}
		writes = append(writes, got)
	}
	if writes != nil {
		t.Errorf("3 ClientHellos wrote %v keys to the bolt store in each of three windows, want 0 in one", writes)
	}

	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err != nil {
		t.Fatalf("provision after abandoned hellos: %v", err)
	}
	if _, err := ctkipClient(in).Provision(context.Background(), d.CTKIPURL, d.ActivationCode); err == nil {
		t.Fatal("a used code provisioned again")
	}
}

// storeWrites reads tokend_store_writes_total from the admin /metrics.
func storeWrites(t *testing.T, in *instance) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tokend_store_writes_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no tokend_store_writes_total in /metrics (%d)", resp.StatusCode)
	return 0
}

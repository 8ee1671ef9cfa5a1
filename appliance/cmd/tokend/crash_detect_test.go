package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tokend/appliance"
)

// TestCrashHarnessDetects shows that TestCrash's checks can fail: after a
// real workload and kill, each row damages the ledger or the store the way
// a lost or invented write would, and the check must name it.
func TestCrashHarnessDetects(t *testing.T) {
	r := &crashRun{t: t, bin: buildTokend(t), seed: 1, rng: rand.New(rand.NewPCG(1, 2)), dir: t.TempDir(), led: newLedger()}
	r.config = filepath.Join(t.TempDir(), "tokend.yaml")
	if err := os.WriteFile(r.config, []byte("auth:\n  max_failures: 1000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(r.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d, _ := r.start(false)
	r.setup(d)
	// Run until a provisioned token has accepted a code at the newest step
	// the window allows (a minute of margin for its replay).
	wl := r.startWorkload(d, 0)
	deadline := time.Now().Add(60 * time.Second)
	var replay acceptedCode
	for replay.code == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		r.led.mu.Lock()
		for _, a := range r.led.accepted {
			if a.step == r.led.ackProv[a.serial].gen.Step(time.Now())+1 {
				replay = a
			}
		}
		r.led.mu.Unlock()
	}
	d.kill()
	wl.stop()
	if replay.code == "" {
		t.Fatal("no code of the newest step accepted within 60s")
	}
	if v := r.checkOffline(); len(v) > 0 {
		t.Fatalf("the undamaged run has violations: %q", v)
	}
	l := r.led
	var imported, free string
	for s := range l.ackSerial {
		if l.ackAssign[s] == "" {
			free = s
		} else if l.ackProv[s].seed != nil {
			imported = s
		}
	}
	if imported == "" || free == "" {
		t.Fatalf("the workload provisioned nothing or left nothing free")
	}
	var someUser string
	for id := range l.ackUser {
		someUser = id
	}

	tests := []struct {
		name   string
		damage func() (undo func())
		want   string
	}{
		{name: "acknowledged import lost", damage: func() func() {
			l.ackSerial["599999999999"] = true
			return func() { delete(l.ackSerial, "599999999999") }
		}, want: "acknowledged import of token 599999999999 lost"},
		{name: "token never imported", damage: func() func() {
			delete(l.reqSerial, imported)
			return func() { l.reqSerial[imported] = true }
		}, want: "token " + imported + " was never imported by a client"},
		{name: "acknowledged assignment lost", damage: func() func() {
			l.ackAssign[free] = someUser
			return func() { delete(l.ackAssign, free) }
		}, want: "acknowledged assignment of token " + free},
		{name: "assignment never asked for", damage: func() func() {
			asked := l.reqAssign[imported]
			l.reqAssign[imported] = nil
			return func() { l.reqAssign[imported] = asked }
		}, want: "token " + imported + " is assigned to user"},
		{name: "provisioned seed differs", damage: func() func() {
			p := l.ackProv[imported]
			l.ackProv[imported] = provisioned{seed: make([]byte, len(p.seed)), userName: p.userName, gen: p.gen}
			return func() { l.ackProv[imported] = p }
		}, want: "the stored seed is not the one its device derived"},
		{name: "acknowledged user lost", damage: func() func() {
			l.ackUser["00000000-0000-7000-8000-000000000000"] = "ghost"
			return func() { delete(l.ackUser, "00000000-0000-7000-8000-000000000000") }
		}, want: "acknowledged user 00000000-0000-7000-8000-000000000000 (ghost) lost"},
		{name: "index entry lost", damage: func() func() {
			r.editStore(t, func(tx appliance.Tx) error { return tx.Delete([]byte("ti/s/" + free)) })
			return func() {}
		}, want: "token " + free + ": no state index entry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			undo := tc.damage()
			defer undo()
			v := r.checkOffline()
			if !containsSub(v, tc.want) {
				t.Fatalf("violations %q do not name %q", v, tc.want)
			}
		})
	}

	// A replay record that did not survive the kill: the restarted tokend
	// accepts the code again, and the check after the restart says so.
	r.editStore(t, func(tx appliance.Tx) error {
		key := []byte("t/" + replay.serial)
		b, err := tx.Get(key)
		if err != nil {
			return err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		delete(m, "last_step")
		b, _ = json.Marshal(m)
		return tx.Put(key, b)
	})
	l.accepted = []acceptedCode{replay}
	d, _ = r.start(false)
	defer d.kill()
	want := "accepted before the kill, was accepted again after the restart"
	if v := r.checkRestarted(d); !containsSub(v, want) {
		t.Fatalf("after a lost replay record: violations %q do not name %q", v, want)
	}
}

// editStore writes straight into the stopped tokend's store.
func (r *crashRun) editStore(t *testing.T, fn func(appliance.Tx) error) {
	t.Helper()
	st, _, err := openOffline(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func containsSub(v []string, sub string) bool {
	for _, s := range v {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

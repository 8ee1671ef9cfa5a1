package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"tokend/appliance"
	"tokend/appliance/seal"
)

func readFileTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// checkOffline checks the killed tokend's store and returns every
// violation: bbolt's own consistency check, `tokend audit verify`, the
// Service's consistency check (indexes, counters, the token limit), and the
// ledger (every acknowledged write present, nothing that was never asked
// for, each imported token traceable to its import job).
func (r *crashRun) checkOffline() []string {
	r.led.mu.Lock()
	defer r.led.mu.Unlock()
	v := slices.Clone(r.led.online)
	r.led.online = nil
	db := filepath.Join(r.dir, "tokend.db")

	// bbolt's check: every page reachable or free, exactly once.
	bdb, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return append(v, fmt.Sprintf("bbolt open: %v", err))
	}
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			v = append(v, fmt.Sprintf("bbolt check: %v", err))
		}
		return nil
	})
	if err != nil {
		v = append(v, fmt.Sprintf("bbolt check: %v", err))
	}
	bdb.Close()

	// The operator's verifier, as shipped.
	out, err := exec.Command(r.bin, "audit", "verify", "--data-dir", r.dir).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("audit chain intact")) {
		v = append(v, fmt.Sprintf("tokend audit verify: %v: %s", err, out))
	}

	st, paths, err := openStoreOffline(r.dir, true)
	if err != nil {
		return append(v, fmt.Sprintf("read-only open: %v", err))
	}
	defer st.Close()
	key, err := readMasterKey(paths.MasterKey, true)
	if err != nil {
		return append(v, err.Error())
	}
	sealer, err := seal.New(key, nil)
	if err != nil {
		return append(v, err.Error())
	}
	svc, err := appliance.New(appliance.Config{Store: st, Sealer: sealer})
	if err != nil {
		return append(v, err.Error())
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	if err := svc.CheckStore(ctx); err != nil {
		v = append(v, fmt.Sprintf("CheckStore: %v", err))
	}
	if rep, err := svc.CheckConsistency(ctx); err != nil {
		v = append(v, fmt.Sprintf("CheckConsistency: %v", err))
		v = append(v, rep.Problems...)
	}

	tokens, users, jobs, err := readRecords(ctx, st)
	if err != nil {
		return append(v, err.Error())
	}
	l := r.led
	for _, s := range sortedKeys(l.ackSerial) {
		if tokens[s] == nil {
			v = append(v, fmt.Sprintf("acknowledged import of token %s lost", s))
		}
	}
	perJob := map[string]int{}
	for s, tok := range tokens {
		if !l.reqSerial[s] {
			v = append(v, fmt.Sprintf("token %s was never imported by a client", s))
		}
		j := jobs[tok.ImportJob]
		switch {
		case tok.ImportJob == "" || j == nil:
			v = append(v, fmt.Sprintf("token %s cannot be traced to an import job (%q)", s, tok.ImportJob))
		case l.fileOf[s] != nil && j.SHA256 != l.fileOf[s].sum:
			v = append(v, fmt.Sprintf("token %s names job %s of another file", s, j.ID))
		}
		perJob[tok.ImportJob]++
		if tok.UserID != "" && !l.reqAssign[s][tok.UserID] {
			v = append(v, fmt.Sprintf("token %s is assigned to user %s, which no client asked for", s, tok.UserID))
		}
		if tok.Provisioned && !l.reqDist[s] {
			v = append(v, fmt.Sprintf("token %s is provisioned, but no client distributed it", s))
		}
	}
	for id, j := range jobs {
		if perJob[id] != j.Imported+j.Overwritten {
			v = append(v, fmt.Sprintf("import job %s (%s) counts %d imported, %d tokens carry its id", id, j.Status, j.Imported, perJob[id]))
		}
	}
	for _, s := range sortedKeys(l.ackAssign) {
		if tok := tokens[s]; tok == nil || tok.UserID != l.ackAssign[s] {
			v = append(v, fmt.Sprintf("acknowledged assignment of token %s to user %s lost", s, l.ackAssign[s]))
		}
	}
	for _, s := range sortedKeys(l.ackProv) {
		tok := tokens[s]
		if tok == nil || !tok.Provisioned {
			v = append(v, fmt.Sprintf("acknowledged provisioning of token %s lost", s))
			continue
		}
		seed, err := svc.TokenSeed(ctx, s)
		if err != nil || !bytes.Equal(seed, l.ackProv[s].seed) {
			v = append(v, fmt.Sprintf("token %s: the stored seed is not the one its device derived (%v)", s, err))
		}
	}
	for _, id := range sortedKeys(l.ackUser) {
		if u := users[id]; u == nil || !strings.EqualFold(u.UserName, l.ackUser[id]) {
			v = append(v, fmt.Sprintf("acknowledged user %s (%s) lost", id, l.ackUser[id]))
		}
	}
	ldapUsers := 0
	for id, u := range users {
		name := strings.ToLower(u.UserName)
		switch {
		case u.Source == appliance.SourceInternal && l.reqUser[name] == "internal":
		case u.Source == r.scimSource && l.reqUser[name] == "scim":
		case r.ldapSource != "" && u.Source == r.ldapSource:
			n, err := strconv.Atoi(strings.TrimPrefix(name, "user"))
			if err != nil || n < 1 || n > r.ldapUsers {
				v = append(v, fmt.Sprintf("LDAP user %s (%s) is not in the directory", id, u.UserName))
			}
			ldapUsers++
		default:
			v = append(v, fmt.Sprintf("user %s (%s, source %s) was never created by a client", id, u.UserName, u.Source))
		}
	}
	if ldapUsers < l.ldapAcked {
		v = append(v, fmt.Sprintf("an acknowledged LDAP sync brought %d users, %d are left", l.ldapAcked, ldapUsers))
	}
	return v
}

// readRecords reads every token, user and import job record.
func readRecords(ctx context.Context, st appliance.Store) (map[string]*appliance.Token, map[string]*appliance.User, map[string]*appliance.ImportJob, error) {
	tokens, users, jobs := map[string]*appliance.Token{}, map[string]*appliance.User{}, map[string]*appliance.ImportJob{}
	err := st.View(ctx, func(tx appliance.Tx) error {
		for _, c := range []struct {
			pfx string
			put func([]byte) error
		}{
			{"t/", func(b []byte) error {
				var x appliance.Token
				err := json.Unmarshal(b, &x)
				tokens[x.Serial] = &x
				return err
			}},
			{"u/", func(b []byte) error { var x appliance.User; err := json.Unmarshal(b, &x); users[x.ID] = &x; return err }},
			{"j/", func(b []byte) error {
				var x appliance.ImportJob
				err := json.Unmarshal(b, &x)
				jobs[x.ID] = &x
				return err
			}},
		} {
			kvs, err := tx.Scan([]byte(c.pfx), nil, 0)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				if err := c.put(kv.Value); err != nil {
					return fmt.Errorf("%s: %w", kv.Key, err)
				}
			}
		}
		return nil
	})
	return tokens, users, jobs, err
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// checkRestarted checks the restarted tokend: no import job still running,
// and no tokencode it accepted before the kill accepted again.
func (r *crashRun) checkRestarted(d *tokendProc) []string {
	var v []string
	ctx, cancel := ctxTimeout()
	defer cancel()
	token := r.adminToken()
	st, b, err := d.do(ctx, "GET", "/api/v1/import-jobs?limit=1000", token, "", nil)
	if err != nil || st != http.StatusOK {
		v = append(v, fmt.Sprintf("GET /import-jobs = %d %v: %s", st, err, b))
	} else if bytes.Contains(b, []byte(`"status":"running"`)) {
		v = append(v, "an import job is still running after the restart")
	}
	l := r.led
	l.mu.Lock()
	replay := l.accepted
	l.accepted = nil
	l.mu.Unlock()
	for _, a := range replay {
		body, _ := json.Marshal(map[string]string{"user_name": a.userName, "passcode": a.code})
		st, b, err := d.do(ctx, "POST", "/api/v1/authenticate", token, "application/json", body)
		var res struct {
			Result string `json:"result"`
		}
		if err != nil || st != http.StatusOK || json.Unmarshal(b, &res) != nil {
			v = append(v, fmt.Sprintf("replay for %s: %d %v: %s", a.userName, st, err, b))
			continue
		}
		if res.Result == "accept" {
			v = append(v, fmt.Sprintf("token %s: the tokencode of step %d, accepted before the kill, was accepted again after the restart", a.serial, a.step))
		}
	}
	l.mu.Lock()
	l.n.Replays += len(replay)
	l.mu.Unlock()
	return v
}

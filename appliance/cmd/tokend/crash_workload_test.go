package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"tokend/appliance/otp"
	"tokend/ctkip"
)

// ledger is what the campaign's clients asked for and what tokend
// acknowledged (a 2xx answer received in full), across all trials. The
// offline check holds the store to it: every acknowledged write present,
// nothing present that was never asked for.
type ledger struct {
	mu sync.Mutex

	nextSerial, nextUser int

	reqSerial map[string]bool        // serials sent in an import file
	ackSerial map[string]bool        // serials of acknowledged imports
	pending   map[string]*importFile // unacknowledged files by SHA-256, posted again later
	fileOf    map[string]*importFile // serial → its file
	free      []string               // acknowledged serials not asked to be assigned

	reqUser    map[string]string          // user name → "internal" or "scim"
	ackUser    map[string]string          // user id → user name
	raceUsers  []string                   // acknowledged internal users, assignment targets
	userTokens map[string]int             // user id → acknowledged assignments
	reqAssign  map[string]map[string]bool // serial → user ids it was asked to be assigned to
	ackAssign  map[string]string          // serial → user id
	assigned   []string                   // acknowledged assignments not yet distributed

	reqDist  map[string]bool        // serials asked to be distributed
	ackProv  map[string]provisioned // serials a device provisioned
	provList []string
	inFlight map[string]bool  // serials being authenticated
	lastStep map[string]int64 // serial → highest step sent

	accepted  []acceptedCode // accepted in the current trial, replayed after the restart
	ldapAcked int            // directory users at the last acknowledged sync

	online []string // violations seen by the clients themselves
	n      ackCounts
}

type importFile struct {
	body    []byte
	serials []string
	sum     string
}

type provisioned struct {
	seed     []byte
	userName string
	gen      otp.SecurID
}

type acceptedCode struct {
	userName, serial, code string
	step                   int64
}

func newLedger() *ledger {
	return &ledger{reqSerial: map[string]bool{}, ackSerial: map[string]bool{}, pending: map[string]*importFile{},
		fileOf: map[string]*importFile{}, reqUser: map[string]string{}, ackUser: map[string]string{}, userTokens: map[string]int{},
		reqAssign: map[string]map[string]bool{}, ackAssign: map[string]string{}, reqDist: map[string]bool{},
		ackProv: map[string]provisioned{}, inFlight: map[string]bool{}, lastStep: map[string]int64{}}
}

func (l *ledger) violation(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.online = append(l.online, fmt.Sprintf(format, args...))
}

func (l *ledger) counts() ackCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// workload is the clients of one trial.
type workload struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// bigImport is told when a file of several chunks is posted, so that
	// some kills land inside an import.
	bigImport chan struct{}
}

// stop ends the clients (their requests to the killed tokend fail) and
// waits for them.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
}

// setup creates what every trial uses: the CT-KIP profile and the SCIM and
// LDAP identity sources.
func (r *crashRun) setup(d *tokendProc) {
	t := r.t
	ctx, cancel := ctxTimeout()
	defer cancel()
	token := r.adminToken()
	mustJSON := func(path string, body any, want int, out any) {
		b, _ := json.Marshal(body)
		st, resp, err := d.do(ctx, "POST", path, token, "application/json", b)
		if err != nil || st != want {
			t.Fatalf("POST %s = %d %v: %s", path, st, err, resp)
		}
		if out != nil {
			if err := json.Unmarshal(resp, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustJSON("/api/v1/profiles", map[string]any{"name": "android", "device_type": "android", "delivery_method": "ctkip",
		"digits": 8, "interval": 60, "pin_mode": "none", "activation_code_ttl": "24h"}, http.StatusCreated, nil)
	var scim struct {
		ID        string `json:"id"`
		SCIMToken string `json:"scim_token"`
	}
	mustJSON("/api/v1/identity-sources", map[string]any{"name": "entra", "type": "scim"}, http.StatusCreated, &scim)
	r.scimSource, r.scimToken = scim.ID, scim.SCIMToken
	if r.ldap != nil {
		var src struct {
			ID string `json:"id"`
		}
		mustJSON("/api/v1/identity-sources", map[string]any{"name": "corp", "type": "ldap",
			"ldap": map[string]any{"url": r.ldap.URL, "bind_dn": r.ldap.ReaderDN, "bind_password": r.ldap.ReaderPassword, "base_dn": r.ldap.PeopleDN}},
			http.StatusCreated, &src)
		r.ldapSource = src.ID
	}
}

func (r *crashRun) adminToken() string {
	b, err := readFileTrim(r.dir + "/admin-token")
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

// do sends one request and reads the whole answer.
func (d *tokendProc) do(ctx context.Context, method, path, bearer, ctype string, body []byte) (int, []byte, error) {
	return doRequest(ctx, d.client, method, d.admin+path, bearer, ctype, body)
}

// doRequest sends one request with a bearer token (and a content type if
// set) and reads the whole answer.
func doRequest(ctx context.Context, client *http.Client, method, url, bearer, ctype string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// client is one workload goroutine's view: its own random source and the
// shared ledger.
type client struct {
	r     *crashRun
	d     *tokendProc
	w     *workload
	rng   *rand.Rand
	led   *ledger
	token string
	ctx   context.Context
}

// startWorkload starts the trial's clients: an importer, a user writer
// (internal and SCIM), three assigners racing toward the token limit, two
// distributor-provisioners, two authenticators and, once, an LDAP sync.
func (r *crashRun) startWorkload(d *tokendProc, trial int) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{cancel: cancel, bigImport: make(chan struct{}, 1)}
	token := r.adminToken()
	roles := []func(*client){(*client).importer, (*client).userWriter, (*client).assigner, (*client).assigner, (*client).assigner,
		(*client).provisioner, (*client).provisioner, (*client).authenticator, (*client).authenticator}
	if r.ldapSource != "" {
		roles = append(roles, (*client).ldapSync)
	}
	for i, role := range roles {
		c := &client{r: r, d: d, rng: rand.New(rand.NewPCG(r.seed, uint64(trial)<<8|uint64(i))), led: r.led, token: token, ctx: ctx, w: w}
		w.wg.Go(func() { role(c) })
	}
	return w
}

// alive reports whether the trial goes on.
func (c *client) alive() bool { return c.ctx.Err() == nil }

// pause waits a little (or until the trial ends).
func (c *client) pause(max time.Duration) {
	select {
	case <-c.ctx.Done():
	case <-time.After(time.Duration(c.rng.Int64N(int64(max)))):
	}
}

// call sends a request; a failure to get an answer is the kill (or a
// request cut by the end of the trial), never a finding. A 5xx answer
// came from a living tokend and is one.
func (c *client) call(method, path, ctype string, body []byte) (int, []byte, bool) {
	st, b, err := c.d.do(c.ctx, method, path, c.token, ctype, body)
	if err != nil {
		return 0, nil, false
	}
	if st >= 500 {
		c.led.violation("%s %s answered %d: %s", method, path, st, b)
		return st, b, false
	}
	return st, b, true
}

func (c *client) postJSON(path string, v any) (int, []byte, bool) {
	b, _ := json.Marshal(v)
	return c.call("POST", path, "application/json", b)
}

// maxNewFiles bounds the new import files of one trial.
const maxNewFiles = 2

// importer posts CSV files of new serials, some large enough to be cut by
// the kill, and posts again the files whose answer it never got.
func (c *client) importer() {
	l := c.led
	made := 0
	for c.alive() {
		l.mu.Lock()
		var f *importFile
		switch {
		case len(l.pending) > 0 && (made >= maxNewFiles || c.rng.IntN(2) == 0):
			for _, p := range l.pending {
				f = p
				break
			}
		case made >= maxNewFiles:
			// Enough new tokens for one trial: the store stays small.
			l.mu.Unlock()
			return
		default:
			made++
			// Mostly small files; now and then one of several chunks, which
			// a kill may cut midway.
			n := 5 + c.rng.IntN(55)
			if c.rng.IntN(5) == 0 {
				n = 200 + c.rng.IntN(400)
			}
			f = &importFile{}
			var b strings.Builder
			b.WriteString("serial\n")
			for range n {
				s := fmt.Sprintf("%012d", 500_000_000_000+l.nextSerial)
				l.nextSerial++
				f.serials = append(f.serials, s)
				l.reqSerial[s] = true
				l.fileOf[s] = f
				b.WriteString(s + "\n")
			}
			f.body = []byte(b.String())
			sum := sha256.Sum256(f.body)
			f.sum = hex.EncodeToString(sum[:])
			l.pending[f.sum] = f
		}
		l.mu.Unlock()
		if len(f.serials) > 2*46 {
			select {
			case c.w.bigImport <- struct{}{}:
			default:
			}
		}
		st, b, ok := c.call("POST", "/api/v1/tokens/import?format=csv", "text/csv", f.body)
		if !ok {
			continue
		}
		if st != http.StatusCreated {
			l.violation("import of %d rows answered %d: %s", len(f.serials), st, b)
			continue
		}
		var job struct {
			Imported, Skipped, Resumed int
			Status                     string
		}
		if err := json.Unmarshal(b, &job); err != nil || job.Status != "completed" || job.Imported+job.Skipped+job.Resumed != len(f.serials) {
			l.violation("import of %d rows: %s", len(f.serials), b)
			continue
		}
		l.mu.Lock()
		if l.pending[f.sum] != nil {
			delete(l.pending, f.sum)
			for _, s := range f.serials {
				l.ackSerial[s] = true
				l.free = append(l.free, s)
			}
			l.n.Tokens += len(f.serials)
			if job.Resumed > 0 {
				l.n.Resumed++
			}
		}
		l.mu.Unlock()
	}
}

// userWriter creates internal users (admin API) and SCIM users.
func (c *client) userWriter() {
	l := c.led
	for c.alive() {
		l.mu.Lock()
		l.nextUser++
		i := l.nextUser
		scim := i%2 == 0
		name := fmt.Sprintf("cu%06d", i)
		kind := "internal"
		if scim {
			name, kind = fmt.Sprintf("su%06d@example.org", i), "scim"
		}
		l.reqUser[name] = kind
		l.mu.Unlock()
		var st int
		var b []byte
		var ok bool
		if scim {
			body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
				"userName": name, "externalId": fmt.Sprintf("ext%06d", i), "active": true, "displayName": "SCIM " + name})
			var err error
			st, b, err = c.d.do(c.ctx, "POST", "/scim/v2/Users", c.r.scimToken, "application/scim+json", body)
			ok = err == nil
			if ok && st >= 500 {
				l.violation("SCIM POST /Users answered %d: %s", st, b)
				ok = false
			}
		} else {
			st, b, ok = c.postJSON("/api/v1/users", map[string]string{"user_name": name, "display_name": "Crash " + name,
				"email": name + "@example.org"})
		}
		if !ok {
			continue
		}
		var u struct {
			ID string `json:"id"`
		}
		if st != http.StatusCreated || json.Unmarshal(b, &u) != nil || u.ID == "" {
			l.violation("create %s user %s answered %d: %s", kind, name, st, b)
			continue
		}
		l.mu.Lock()
		l.ackUser[u.ID] = name
		if !scim {
			l.raceUsers = append(l.raceUsers, u.ID)
		}
		l.n.Users++
		l.mu.Unlock()
		c.pause(40 * time.Millisecond)
	}
}

// assigner assigns free tokens to the newest users that are not full yet;
// three of them race for the same users, so the limit is reached under
// contention. Now and then it asks for a token another user holds.
func (c *client) assigner() {
	l := c.led
	for c.alive() {
		l.mu.Lock()
		var cand []string
		for i := len(l.raceUsers) - 1; i >= 0 && len(cand) < 3; i-- {
			if l.userTokens[l.raceUsers[i]] < 3 {
				cand = append(cand, l.raceUsers[i])
			}
		}
		k := 1 + c.rng.IntN(2)
		if len(cand) == 0 || len(l.free) < k {
			l.mu.Unlock()
			c.pause(20 * time.Millisecond)
			continue
		}
		user := cand[c.rng.IntN(len(cand))]
		var serials []string
		steal := c.rng.IntN(10) == 0 && len(l.assigned) > 0
		if steal {
			s := l.assigned[c.rng.IntN(len(l.assigned))]
			if l.ackAssign[s] == user {
				steal = false
			} else {
				serials = []string{s}
			}
		}
		if !steal {
			serials = append(serials, l.free[len(l.free)-k:]...)
			l.free = l.free[:len(l.free)-k]
		}
		for _, s := range serials {
			if l.reqAssign[s] == nil {
				l.reqAssign[s] = map[string]bool{}
			}
			l.reqAssign[s][user] = true
		}
		l.mu.Unlock()
		st, b, ok := c.postJSON("/api/v1/users/"+user+"/tokens", map[string]any{"serials": serials})
		l.mu.Lock()
		switch {
		case ok && st == http.StatusOK:
			for _, s := range serials {
				if prev, ok := l.ackAssign[s]; ok && prev != user {
					l.online = append(l.online, fmt.Sprintf("token %s acknowledged to user %s and to user %s", s, prev, user))
				}
				l.ackAssign[s] = user
				l.assigned = append(l.assigned, s)
			}
			l.userTokens[user] += len(serials)
			if l.userTokens[user] > 3 {
				l.online = append(l.online, fmt.Sprintf("user %s: %d token assignments acknowledged", user, l.userTokens[user]))
			}
			l.n.Assignments += len(serials)
		case ok && st == http.StatusConflict:
			// The limit (or a token someone else holds): back to the pool.
			if !steal {
				l.free = append(l.free, serials...)
			}
		case ok:
			l.online = append(l.online, fmt.Sprintf("assign %v to %s answered %d: %s", serials, user, st, b))
		default:
			// No answer: whether it happened is for the offline check.
		}
		l.mu.Unlock()
	}
}

// provisioner distributes an acknowledged assigned token and provisions it
// with the repository's CT-KIP client, as a device would.
func (c *client) provisioner() {
	l := c.led
	for c.alive() {
		l.mu.Lock()
		if len(l.assigned) == 0 {
			l.mu.Unlock()
			c.pause(30 * time.Millisecond)
			continue
		}
		i := c.rng.IntN(len(l.assigned))
		serial := l.assigned[i]
		l.assigned = append(l.assigned[:i], l.assigned[i+1:]...)
		user := l.ackUser[l.ackAssign[serial]]
		l.reqDist[serial] = true
		l.mu.Unlock()
		st, b, ok := c.postJSON("/api/v1/tokens/"+serial+"/distribution", map[string]string{"profile": "android"})
		if !ok {
			continue
		}
		var d distribution
		if st != http.StatusCreated || json.Unmarshal(b, &d) != nil {
			l.violation("distribute %s answered %d: %s", serial, st, b)
			continue
		}
		res, err := (&ctkip.Client{HTTP: c.d.client}).Provision(c.ctx, d.CTKIPURL, d.ActivationCode)
		if err != nil {
			var fault *ctkip.FaultError
			if errors.As(err, &fault) && c.alive() {
				l.violation("provision %s: %v", serial, err)
			}
			continue
		}
		gen, err := otp.NewSecurID(res.Seed[:], res.Serial, res.Digits, res.Interval)
		if err != nil || res.Serial != serial {
			l.violation("provision %s gave %s: %v", serial, res.Serial, err)
			continue
		}
		l.mu.Lock()
		l.ackProv[serial] = provisioned{seed: append([]byte(nil), res.Seed[:]...), userName: user, gen: gen}
		l.provList = append(l.provList, serial)
		l.n.Provisioned++
		l.mu.Unlock()
	}
}

// authenticator sends tokencodes of provisioned tokens, each step at most
// once per token and in increasing order, so each should be accepted; the
// accepted ones are replayed after the restart.
func (c *client) authenticator() {
	l := c.led
	for c.alive() {
		l.mu.Lock()
		var serial string
		var p provisioned
		var step int64
		for range 8 {
			if len(l.provList) == 0 {
				break
			}
			s := l.provList[c.rng.IntN(len(l.provList))]
			if l.inFlight[s] {
				continue
			}
			pv := l.ackProv[s]
			now := pv.gen.Step(time.Now())
			st := max(l.lastStep[s]+1, now-1)
			if st > now+1 {
				continue
			}
			serial, p, step = s, pv, st
			break
		}
		if serial == "" {
			l.mu.Unlock()
			c.pause(30 * time.Millisecond)
			continue
		}
		l.inFlight[serial], l.lastStep[serial] = true, step
		l.mu.Unlock()
		code, _ := p.gen.CodeAt(step)
		st, b, ok := c.postJSON("/api/v1/authenticate", map[string]string{"user_name": p.userName, "passcode": code})
		l.mu.Lock()
		delete(l.inFlight, serial)
		if ok && st == http.StatusOK {
			var res struct {
				Result string `json:"result"`
			}
			if json.Unmarshal(b, &res) == nil && res.Result == "accept" {
				l.accepted = append(l.accepted, acceptedCode{userName: p.userName, serial: serial, code: code, step: step})
				l.n.Accepted++
			}
		} else if ok {
			l.online = append(l.online, fmt.Sprintf("authenticate %s answered %d: %s", p.userName, st, b))
		}
		l.mu.Unlock()
	}
}

// ldapSync runs one sync of the LDAP source at a random moment of the
// trial.
func (c *client) ldapSync() {
	c.pause(time.Second)
	if !c.alive() {
		return
	}
	want := c.r.ldapUsers
	st, b, ok := c.call("POST", "/api/v1/identity-sources/"+c.r.ldapSource+"/sync", "", nil)
	if !ok || st == http.StatusConflict {
		// 409: the scheduler's own run of the source is under way.
		return
	}
	if st != http.StatusOK {
		c.led.violation("LDAP sync answered %d: %s", st, b)
		return
	}
	c.led.mu.Lock()
	c.led.ldapAcked = max(c.led.ldapAcked, want)
	c.led.n.LDAPSyncs++
	c.led.mu.Unlock()
}

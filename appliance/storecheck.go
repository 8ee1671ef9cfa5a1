package appliance

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ErrInconsistent is returned (wrapped) by CheckConsistency when an index,
// a counter or an invariant disagrees with the records.
var ErrInconsistent = errors.New("store inconsistent")

// maxConsistencyProblems bounds the problems a report lists; the count
// covers them all.
const maxConsistencyProblems = 200

// ConsistencyReport is what CheckConsistency read and found.
type ConsistencyReport struct {
	Tokens, Users, Jobs, Codes int
	// ProblemsTotal counts every problem; Problems lists the first ones.
	ProblemsTotal int
	Problems      []string
}

func (r *ConsistencyReport) addf(format string, args ...any) {
	r.ProblemsTotal++
	if len(r.Problems) < maxConsistencyProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// CheckConsistency reads the whole store in one snapshot and checks what
// a crash must never break: every token and user index entry against its
// record and back, the inventory counters against the records, at most
// MaxTokensPerUser counted tokens per user, assignments to existing users,
// outstanding activation codes against their tokens, imported tokens
// against their import jobs, and API token hashes against their records.
// It only reads (inspection commands run it on a read-only store) and
// returns ErrInconsistent (wrapped) if anything disagrees. It is for a
// stopped or quiet store: it reads every record, so it is slow on a large
// one.
func (s *Service) CheckConsistency(ctx context.Context) (ConsistencyReport, error) {
	var rep ConsistencyReport
	err := s.store.View(ctx, func(tx Tx) error {
		rep = ConsistencyReport{}
		return checkConsistency(tx, &rep)
	})
	if err != nil {
		return rep, err
	}
	if rep.ProblemsTotal > 0 {
		return rep, fmt.Errorf("%d problems: %w", rep.ProblemsTotal, ErrInconsistent)
	}
	return rep, nil
}

func checkConsistency(tx Tx, rep *ConsistencyReport) error {
	users := map[string]*User{}
	userCounts := map[string]int64{}
	err := scanAll(tx, pfxUser, func(kv KV) error {
		var u User
		if err := decodeRecord(tx, kv.Value, &u); err != nil {
			rep.addf("user record %q does not decode: %v", kv.Key, err)
			return nil
		}
		if string(kv.Key) != pfxUser+u.ID {
			rep.addf("user record %q holds id %q", kv.Key, u.ID)
		}
		users[u.ID] = &u
		userCounts[userCountField(u.Source, u.Active)]++
		return checkUserIndexes(tx, &u, rep)
	})
	if err != nil {
		return err
	}
	rep.Users = len(users)
	// Every user index entry names an existing user whose fields give the
	// entry's key (no entry survives its record).
	for _, ix := range []struct {
		pfx  string
		key  func(*User) []byte
		name string
	}{
		{pfxUserLogin, func(u *User) []byte { return loginKey(u.UserName) }, "login"},
		{pfxUserEmail, emailKey, "e-mail"},
		{pfxUserDisplay, displayKey, "display name"},
	} {
		err := scanAll(tx, ix.pfx, func(kv KV) error {
			id, _, _ := strings.Cut(string(kv.Value), "\x00")
			u := users[id]
			if u == nil {
				rep.addf("%s index entry %q names user %q, which does not exist", ix.name, kv.Key, id)
			} else if !bytes.Equal(ix.key(u), kv.Key) {
				rep.addf("%s index entry %q names user %q, whose record gives %q", ix.name, kv.Key, id, ix.key(u))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	err = scanAll(tx, pfxUserExt, func(kv KV) error {
		u := users[string(kv.Value)]
		if u == nil {
			rep.addf("external id index entry %q names user %q, which does not exist", kv.Key, kv.Value)
		} else if !bytes.Equal(kv.Key, extEntryKey(u.Source, u.ExternalID, u.ID)) && !bytes.Equal(kv.Key, extKey(u.Source, u.ExternalID)) {
			rep.addf("external id index entry %q names user %q, whose record has another source or external id", kv.Key, u.ID)
		}
		return nil
	})
	if err != nil {
		return err
	}

	jobs := map[string]*ImportJob{}
	err = scanAll(tx, pfxJob, func(kv KV) error {
		var j ImportJob
		if err := decodeRecord(tx, kv.Value, &j); err != nil {
			rep.addf("import job %q does not decode: %v", kv.Key, err)
			return nil
		}
		jobs[j.ID] = &j
		return nil
	})
	if err != nil {
		return err
	}
	rep.Jobs = len(jobs)

	tokenCounts := map[string]int64{}
	perUser := map[string]int{}
	perJob := map[string]int{}
	codes := map[string]string{} // hex code hash → serial, of tokens with an outstanding code
	err = scanAll(tx, pfxToken, func(kv KV) error {
		var t Token
		if err := decodeRecord(tx, kv.Value, &t); err != nil {
			rep.addf("token record %q does not decode: %v", kv.Key, err)
			return nil
		}
		rep.Tokens++
		serial := t.Serial
		if string(kv.Key) != pfxToken+serial {
			rep.addf("token record %q holds serial %q", kv.Key, serial)
		}
		tokenCounts[tokenCountOf(&t)]++
		if v, err := tx.Get(tokenStateKey(serial)); err != nil {
			rep.addf("token %s: no state index entry (%v)", serial, err)
		} else if !bytes.Equal(v, tokenStateValue(&t)) {
			rep.addf("token %s: state index entry %q, record gives %q", serial, v, tokenStateValue(&t))
		}
		if t.UserID != "" {
			if users[t.UserID] == nil {
				rep.addf("token %s is assigned to user %q, which does not exist", serial, t.UserID)
			}
			if ok, err := exists(tx, tokenUserKey(t.UserID, serial)); err != nil {
				return err
			} else if !ok {
				rep.addf("token %s: no tokens-by-user entry for its user %q", serial, t.UserID)
			}
			// The new token of a pending replacement counts with its
			// old one (lifecycle.go limitCount).
			if countsTowardLimit(&t) && t.Replaces == "" {
				perUser[t.UserID]++
			}
		}
		if t.ImportJob != "" {
			if jobs[t.ImportJob] == nil {
				rep.addf("token %s names import job %q, which does not exist", serial, t.ImportJob)
			}
			perJob[t.ImportJob]++
		}
		if len(t.CodeHash) > 0 {
			h := hex.EncodeToString(t.CodeHash)
			codes[h] = serial
			var c ActivationCode
			// The error would name the record's key, the code's keyed
			// hash: the problem says what is wrong without it.
			if err := getJSON(tx, codeKey(t.CodeHash), &c); errors.Is(err, ErrNotFound) {
				rep.addf("token %s: its outstanding activation code has no record", serial)
			} else if err != nil {
				rep.addf("token %s: its outstanding activation code record does not decode", serial)
			} else if c.Serial != serial || (c.State != CodeIssued && c.State != CodeInUse) {
				rep.addf("token %s: its outstanding activation code record is for %q in state %s", serial, c.Serial, c.State)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(perUser)) {
		if n := perUser[id]; n > MaxTokensPerUser {
			rep.addf("user %q holds %d tokens that count toward the limit of %d", id, n, MaxTokensPerUser)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(perJob)) {
		if j := jobs[id]; j != nil && perJob[id] > j.Imported+j.Overwritten {
			rep.addf("import job %s: %d tokens carry its id, it counts %d imported and %d overwritten", id, perJob[id], j.Imported, j.Overwritten)
		}
	}
	for _, j := range jobs {
		if j.DryRun && perJob[j.ID] > 0 {
			rep.addf("dry-run import job %s: %d tokens carry its id", j.ID, perJob[j.ID])
		}
	}
	err = scanAll(tx, "ji/", func(kv KV) error {
		j := jobs[string(kv.Value)]
		if j == nil || j.Status != JobInterrupted || "ji/"+j.SHA256 != string(kv.Key) {
			rep.addf("resume entry %q names job %q, which is not an interrupted import of that file", kv.Key, kv.Value)
		}
		return nil
	})
	if err != nil {
		return err
	}

	// Index entries without their token record.
	err = scanAll(tx, pfxTokenState, func(kv KV) error {
		serial := string(kv.Key[len(pfxTokenState):])
		if ok, err := exists(tx, tokenKey(serial)); err != nil {
			return err
		} else if !ok {
			rep.addf("state index entry of token %s, which does not exist", serial)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = scanAll(tx, pfxTokenUser, func(kv KV) error {
		rest := string(kv.Key[len(pfxTokenUser):])
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			rep.addf("malformed tokens-by-user entry %q", kv.Key)
			return nil
		}
		userID, serial := rest[:i], rest[i+1:]
		t, err := getToken(tx, serial)
		switch {
		case errors.Is(err, ErrNotFound):
			rep.addf("tokens-by-user entry of user %q names token %s, which does not exist", userID, serial)
		case err != nil:
			rep.addf("tokens-by-user entry of user %q names token %s: %v", userID, serial, err)
		case t.UserID != userID:
			rep.addf("tokens-by-user entry of user %q names token %s, which is assigned to %q", userID, serial, t.UserID)
		}
		return nil
	})
	if err != nil {
		return err
	}

	// An outstanding code is one its token points at (one per token).
	err = scanAll(tx, pfxCode, func(kv KV) error {
		rep.Codes++
		var c ActivationCode
		if err := decodeRecord(tx, kv.Value, &c); err != nil {
			rep.addf("activation code record does not decode: %v", err)
			return nil
		}
		if (c.State == CodeIssued || c.State == CodeInUse) && codes[string(kv.Key[len(pfxCode):])] != c.Serial {
			rep.addf("an activation code for token %s is %s, but the token does not point at it", c.Serial, c.State)
		}
		return nil
	})
	if err != nil {
		return err
	}

	for _, c := range []struct {
		key  []byte
		want map[string]int64
		name string
	}{{keyTokenCounts, tokenCounts, "token"}, {keyUserCounts, userCounts, "user"}} {
		got, err := readCounts(tx, c.key)
		if err != nil {
			rep.addf("%s counters: %v", c.name, err)
			continue
		}
		for _, f := range slices.Sorted(maps.Keys(mergeKeys(got, c.want))) {
			if got[f] != c.want[f] {
				rep.addf("%s counter %q is %d, the records count %d", c.name, strings.ReplaceAll(f, "\x00", "/"), got[f], c.want[f])
			}
		}
	}

	return scanAll(tx, pfxAPITokenIdx, func(kv KV) error {
		var k APIToken
		if err := getJSON(tx, apiTokenKey(string(kv.Value)), &k); err != nil {
			rep.addf("API token index entry names %q: %v", kv.Value, err)
		} else if pfxAPITokenIdx+hex.EncodeToString(k.Hash) != string(kv.Key) {
			rep.addf("API token index entry of %q does not match its record's hash", k.ID)
		}
		return nil
	})
}

// checkUserIndexes checks that each index entry of u is present with the
// value its record gives.
func checkUserIndexes(tx Tx, u *User, rep *ConsistencyReport) error {
	iv := userIndexValue(u)
	want := []struct {
		key, val []byte
		name     string
	}{{loginKey(u.UserName), loginIndexValue(u), "login"}}
	if u.Email != "" {
		want = append(want, struct {
			key, val []byte
			name     string
		}{emailKey(u), iv, "e-mail"})
	}
	if u.DisplayName != "" {
		want = append(want, struct {
			key, val []byte
			name     string
		}{displayKey(u), nil, "display name"})
	}
	for _, w := range want {
		v, err := tx.Get(w.key)
		switch {
		case errors.Is(err, ErrNotFound):
			rep.addf("user %q: no %s index entry", u.ID, w.name)
		case err != nil:
			return err
		case w.val != nil && !bytes.Equal(v, w.val):
			rep.addf("user %q: %s index entry %q, record gives %q", u.ID, w.name, v, w.val)
		case w.val == nil && !bytes.HasPrefix(v, iv):
			rep.addf("user %q: %s index entry %q does not start with %q", u.ID, w.name, v, iv)
		}
	}
	if u.ExternalID != "" {
		ok, err := exists(tx, extEntryKey(u.Source, u.ExternalID, u.ID))
		if err != nil {
			return err
		}
		if !ok {
			v, err := tx.Get(extKey(u.Source, u.ExternalID))
			if err != nil || string(v) != u.ID {
				rep.addf("user %q: no external id index entry", u.ID)
			}
		}
	}
	return nil
}

func mergeKeys(a, b map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(a)+len(b))
	for k := range a {
		out[k] = 0
	}
	for k := range b {
		out[k] = 0
	}
	return out
}

package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// DirectoryUser is a user of a pulled identity source, in the form sync
// plans with.
type DirectoryUser struct {
	UserID        string
	ExternalID    string
	UserName      string
	DisplayName   string
	Email         string
	Active        bool
	Disabled      bool
	DeactivatedAt time.Time
}

// DirectoryPlan is what one sync run writes: complete desired records
// (Purge: the current records to delete).
type DirectoryPlan struct {
	Add, Update, Deactivate, Reactivate, Purge []DirectoryUser
}

// DirectoryResult counts what ApplyDirectoryPlan did.
type DirectoryResult struct {
	Applied int
	// Conflicts are planned users whose login is held by a user of another
	// source; they are skipped and reported, never merged.
	Conflicts []string
	// Rejected are the external ids of planned users whose login breaks
	// UserNameRule: a new one is not added, an existing one keeps its
	// stored login while the rest of its record (deactivation included)
	// is applied. One odd directory entry never fails a run.
	Rejected []string
}

// DirectoryUsers returns every user of a source, keyed by external id.
func (s *Service) DirectoryUsers(ctx context.Context, source string) ([]DirectoryUser, error) {
	var out []DirectoryUser
	err := s.store.View(ctx, func(tx Tx) error {
		prefix := extKey(source, "")
		kvs, err := tx.Scan(prefix, nil, 0)
		if err != nil {
			return err
		}
		out = make([]DirectoryUser, 0, len(kvs))
		for _, kv := range kvs {
			u, err := getUser(tx, string(kv.Value))
			if err != nil {
				return err
			}
			out = append(out, DirectoryUser{UserID: u.ID, ExternalID: u.ExternalID, UserName: u.UserName, DisplayName: u.DisplayName,
				Email: u.Email, Active: u.Active, Disabled: u.DirectoryDisabled, DeactivatedAt: u.DeactivatedAt})
		}
		return nil
	})
	return out, err
}

type appendHintKey struct{}

// WithAppendHint marks ctx's Updates as bulk writes of keys that mostly
// follow the keys already stored (a sync's new users). A store may then
// pack the pages it splits fuller than it would for random inserts
// (bbolt's 50 % default halves every appended page); stores may ignore it.
func WithAppendHint(ctx context.Context) context.Context {
	return context.WithValue(ctx, appendHintKey{}, true)
}

// AppendHint reports whether ctx carries WithAppendHint.
func AppendHint(ctx context.Context) bool {
	v, _ := ctx.Value(appendHintKey{}).(bool)
	return v
}

// applyWorkers commit plan chunks concurrently so group commit can share
// fsyncs between them.
const applyWorkers = 48

type dirOp struct {
	u     DirectoryUser
	newID string
}

// ApplyDirectoryPlan writes a sync plan in chunks that respect the store's
// write limit. Each chunk is one transaction; a user is written whole or not
// at all, and re-applying a plan converges. Purged users lose their tokens
// (unassigned, software seeds wiped) and are deleted (PurgeSourceUsers).
func (s *Service) ApplyDirectoryPlan(ctx context.Context, source string, plan DirectoryPlan) (DirectoryResult, error) {
	var ops []dirOp
	for _, list := range [][]DirectoryUser{plan.Update, plan.Deactivate, plan.Reactivate} {
		for _, u := range list {
			ops = append(ops, dirOp{u: u})
		}
	}
	// New users in login order: their index keys then cluster too.
	adds := slices.Clone(plan.Add)
	slices.SortFunc(adds, func(a, b DirectoryUser) int { return strings.Compare(fold(a.UserName), fold(b.UserName)) })
	ids := make([]string, len(adds))
	for i := range ids {
		id, err := s.newID()
		if err != nil {
			return DirectoryResult{}, err
		}
		ids[i] = id
	}
	// Ids made in the same millisecond are in random order; handed out
	// sorted, the user records of successive chunks are appended at the
	// end of the key space instead of landing all over the last few
	// milliseconds' range, where each commit rewrote ~half a page per user
	// (issue 19: 306 MB written for 100,000 users).
	slices.Sort(ids)
	for i, u := range adds {
		ops = append(ops, dirOp{u: u, newID: ids[i]})
	}
	now := s.now().UTC()
	// Chunk by an upper estimate of each op's writes: a fuller chunk means
	// fewer commits (the initial sync is bound by them).
	var chunks [][]dirOp
	var cur []dirOp
	budget := 0
	for _, op := range ops {
		w := dirOpWrites(op)
		if budget+w > MaxTxWrites-2 {
			chunks = append(chunks, cur)
			cur, budget = nil, 0
		}
		cur = append(cur, op)
		budget += w
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	var (
		mu           sync.Mutex
		res          DirectoryResult
		first        error
		wg           sync.WaitGroup
		work         = make(chan []dirOp)
		cctx, cancel = context.WithCancel(WithAppendHint(ctx))
	)
	defer cancel()
	for range applyWorkers {
		wg.Go(func() {
			for c := range work {
				applied, conflicts, rejected, err := s.applyDirectoryChunk(cctx, source, c, now)
				mu.Lock()
				if err != nil && first == nil {
					first = err
					cancel()
				}
				res.Applied += applied
				res.Conflicts = append(res.Conflicts, conflicts...)
				res.Rejected = append(res.Rejected, rejected...)
				mu.Unlock()
			}
		})
	}
feed:
	for _, c := range chunks {
		select {
		case work <- c:
		case <-cctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first != nil {
		return res, first
	}
	if len(plan.Purge) > 0 {
		ids := make([]string, len(plan.Purge))
		for i, u := range plan.Purge {
			ids[i] = u.UserID
		}
		n, err := s.PurgeSourceUsers(ctx, source, ids)
		res.Applied += n
		if err != nil {
			return res, err
		}
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		return appendAudit(tx, now, ActorFrom(ctx), AuditEvent{Action: "sync.apply", Target: source, Outcome: OutcomeSuccess,
			Detail: fmt.Sprintf("added=%d updated=%d deactivated=%d reactivated=%d purged=%d conflicts=%d rejected=%d", len(plan.Add),
				len(plan.Update), len(plan.Deactivate), len(plan.Reactivate), len(plan.Purge), len(res.Conflicts), len(res.Rejected))})
	})
	return res, err
}

// dirOpWrites is an upper bound of the writes putUser makes for op (the
// chunk's counter write is budgeted apart): a new user is its record, its
// login and up to three more index entries; a change may also delete the
// stored user's four index entries.
func dirOpWrites(op dirOp) int {
	if op.newID == "" {
		return 9
	}
	w := 2
	for _, f := range []string{op.u.Email, op.u.DisplayName, op.u.ExternalID} {
		if f != "" {
			w++
		}
	}
	return w
}

func (s *Service) applyDirectoryChunk(ctx context.Context, source string, chunk []dirOp, now time.Time) (int, []string, []string, error) {
	var applied int
	var conflicts, rejected []string
	// Counter changes are buffered so the chunk writes them once.
	err := s.store.Update(ctx, func(tx Tx) error {
		return withCounts(tx, func(tx Tx) error {
			applied, conflicts, rejected = 0, nil, nil
			for _, op := range chunk {
				var old *User
				id := op.newID
				if id == "" {
					var err error
					if old, err = getUser(tx, op.u.UserID); err != nil {
						return err
					}
					id = old.ID
				}
				u := User{ID: id, UserName: op.u.UserName, DisplayName: op.u.DisplayName, Email: op.u.Email, Source: source,
					ExternalID: op.u.ExternalID, Active: op.u.Active, DirectoryDisabled: op.u.Disabled,
					DeactivatedAt: op.u.DeactivatedAt, CreatedAt: now, UpdatedAt: now}
				if old != nil {
					u.CreatedAt, u.Failures, u.LockedUntil = old.CreatedAt, old.Failures, old.LockedUntil
				}
				if u.Active {
					u.DeactivatedAt = time.Time{}
				}
				// The directory's own spelling is stored (so the next plan
				// compares equal); the rule is checked on its NFC form.
				if (old == nil || u.UserName != old.UserName) && !ValidUserName(NormalizeName(u.UserName)) {
					rejected = append(rejected, op.u.ExternalID)
					if old == nil {
						continue
					}
					u.UserName = old.UserName
					if sameDirectoryFields(&u, old) {
						continue
					}
				}
				if err := putUser(tx, &u, old); err != nil {
					if errors.Is(err, ErrExists) {
						conflicts = append(conflicts, op.u.UserName)
						continue
					}
					return err
				}
				applied++
			}
			return nil
		})
	})
	return applied, conflicts, rejected, err
}

// sameDirectoryFields reports whether applying u would change nothing a
// directory sets in old.
func sameDirectoryFields(u, old *User) bool {
	return u.UserName == old.UserName && u.DisplayName == old.DisplayName && u.Email == old.Email &&
		u.Active == old.Active && u.DirectoryDisabled == old.DirectoryDisabled && u.DeactivatedAt.Equal(old.DeactivatedAt)
}

func syncCookieKey(source string) []byte { return []byte("sc/" + source) }

// SyncCookie returns the stored incremental-sync cookie of a source (nil if
// none).
func (s *Service) SyncCookie(ctx context.Context, source string) ([]byte, error) {
	var out []byte
	err := s.store.View(ctx, func(tx Tx) error {
		v, err := tx.Get(syncCookieKey(source))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		out = v
		return err
	})
	return out, err
}

// SaveSyncCookie stores a source's cookie; call it only after the changes
// the cookie covers are committed.
func (s *Service) SaveSyncCookie(ctx context.Context, source string, cookie []byte) error {
	return s.store.Update(ctx, func(tx Tx) error {
		if len(cookie) == 0 {
			return tx.Delete(syncCookieKey(source))
		}
		return tx.Put(syncCookieKey(source), cookie)
	})
}

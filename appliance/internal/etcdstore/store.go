package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"tokend/appliance"
)

// Defaults of Options.
const (
	DefaultPrefix         = "/tokend/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxAttempts    = 64
	DefaultPurgeInterval  = 10 * time.Minute
)

// maxTxnOps is etcd's default --max-txn-ops: the most compares, and
// separately the most operations, one Txn may hold.
const maxTxnOps = 128

// Backoff between attempts of a conflicting Update: a random wait up to
// min(backoffBase << attempt, backoffCap).
const (
	backoffBase = 250 * time.Microsecond
	backoffCap  = 20 * time.Millisecond
)

// Value tags.
const (
	tagLive      = 0x00
	tagTombstone = 0x01
)

// errCompacted marks a read at a revision etcd has compacted away: the
// function must run again at a newer revision.
var errCompacted = errors.New("etcdstore: read revision compacted")

// errTxDone is returned by a Tx used after its function returned.
var errTxDone = errors.New("etcdstore: transaction used after its function returned")

// ErrCredentials means Options hold a username without a password or a
// password without a username.
var ErrCredentials = errors.New("etcdstore: username and password: set both or neither")

// ErrBadValue means a key under the prefix holds a value this package did
// not write (no tag): the prefix is shared with something else.
var ErrBadValue = errors.New("etcdstore: value without a tokend tag under the prefix")

// CommitObserver is told about every committed Update, for metrics. It has
// the shape of boltstore's, so one recorder serves both.
type CommitObserver interface {
	ObserveCommit(d time.Duration, writes, callers int)
}

// ConflictObserver, if the Observer also implements it, is told about every
// attempt that lost to a concurrent writer.
type ConflictObserver interface {
	ObserveConflict()
}

// CommitFailureObserver, if the Observer also implements it, is told about
// every Update that failed with appliance.ErrStoreUnavailable (no quorum
// within the request timeout, or a commit whose outcome is unknown).
type CommitFailureObserver interface {
	ObserveCommitFailure()
}

// Options configures Open.
type Options struct {
	// Endpoints are the etcd members' client URLs (http:// or https://).
	Endpoints []string
	// Prefix namespaces every key; "" means DefaultPrefix. It must end in
	// "/" so that one prefix is never the start of another.
	Prefix string
	// TLS, if set, is used to reach the members (server CA, client
	// certificate).
	TLS *tls.Config
	// DialTimeout bounds Open's first contact and Ping. 0: the default.
	DialTimeout time.Duration
	// RequestTimeout bounds each request to etcd (a read, a commit) when
	// the caller's context allows longer: without quorum the client waits
	// for one, and a door's caller must get an answer. 0: the default.
	RequestTimeout time.Duration
	// MaxAttempts bounds the runs of one Update's function before it
	// fails with ErrConflict. 0: the default.
	MaxAttempts int
	// PurgeInterval is how often tombstones are purged in the background;
	// 0: the default, negative: never (call PurgeTombstones yourself).
	PurgeInterval time.Duration
	// ReadOnly makes Update fail with appliance.ErrReadOnly (inspection
	// commands).
	ReadOnly bool
	// Observer, if set, is told about commits (and conflicts, see
	// ConflictObserver).
	Observer CommitObserver
	// DialOptions are added to the client's (for example an interceptor
	// that times every request, for metrics).
	DialOptions []grpc.DialOption
	// Username and Password, if set, authenticate to etcd's RBAC (both or
	// neither). The client keeps the password to authenticate again when
	// its token expires. Over plain http it crosses the network in clear:
	// the caller decides where that is acceptable.
	Username string
	Password appliance.Secret
}

// LogValue is what slog shows of Options: where the store connects, never
// the password (slog's JSON handler would otherwise marshal the field's
// string).
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("endpoints", o.Endpoints), slog.String("prefix", o.Prefix),
		slog.Bool("tls", o.TLS != nil), slog.String("username", o.Username), slog.Any("password", o.Password),
		slog.Bool("read_only", o.ReadOnly))
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = DefaultPurgeInterval
	}
	return o
}

// Store is the etcd appliance.Store. Create it with Open.
type Store struct {
	cli  *clientv3.Client
	opts Options

	data    string // PREFIX + "k/": where tokend's keys live
	dataEnd string // the end of that range
	horizon string // PREFIX + "m/horizon"

	// gate: first attempts of Updates hold it shared, later attempts
	// exclusively (see the package doc).
	gate sync.RWMutex

	// mu guards closed; Views and Updates hold it shared for their whole
	// run, so Close (exclusive) waits for them.
	mu     sync.RWMutex
	closed bool

	purgeMu     sync.Mutex // one purge at a time
	stopPurging chan struct{}
	purger      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

var _ appliance.Store = (*Store)(nil)

// Open connects to the etcd cluster and checks that it answers (a quorum
// read within DialTimeout).
func Open(ctx context.Context, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no endpoints")
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("etcdstore: prefix %q must end in /", opts.Prefix)
	}
	// The client ignores a username without a password and would connect
	// unauthenticated; say so instead.
	if (opts.Username == "") != (opts.Password == "") {
		return nil, ErrCredentials
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		TLS:         opts.TLS,
		// Errors reach the caller as values; the client's own zap log
		// would be a second, differently formatted log stream.
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		DialOptions:          opts.DialOptions,
		Username:             opts.Username,
		Password:             opts.Password.Reveal(),
	})
	if err != nil {
		if opts.Username != "" {
			// The client's error never holds the password; the user
			// is named so an operator knows which account failed.
			return nil, fmt.Errorf("etcdstore: connect %s as user %q: %w", strings.Join(opts.Endpoints, ","), opts.Username, err)
		}
		return nil, fmt.Errorf("etcdstore: connect %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	s := &Store{
		cli:         cli,
		opts:        opts,
		data:        opts.Prefix + "k/",
		horizon:     opts.Prefix + "m/horizon",
		stopPurging: make(chan struct{}),
	}
	s.dataEnd = clientv3.GetPrefixRangeEnd(s.data)
	if err := s.Ping(ctx); err != nil {
		_ = cli.Close()
		return nil, err
	}
	if opts.PurgeInterval > 0 && !opts.ReadOnly {
		s.purger.Add(1)
		go s.purgeLoop()
	}
	return s, nil
}

// Client returns the etcd client (for elections and leases built on the
// same connection).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix.
func (s *Store) Prefix() string { return s.opts.Prefix }

// Ping fails when the cluster cannot answer a linearizable read within
// DialTimeout: the member reached has no leader or no quorum. /readyz
// uses it.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	if _, err := s.cli.Get(ctx, s.horizon, clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcdstore: %s: %w: %w", strings.Join(s.opts.Endpoints, ","), appliance.ErrStoreUnavailable, err)
	}
	return nil
}

// Size returns the database size of the first member that answers a
// status request within DialTimeout (every key prefix of that etcd, not
// only this store's), or 0 if none does. It is meant for metrics: etcd
// refuses writes once its quota (2 GiB by default) is reached.
func (s *Store) Size() int64 {
	for _, ep := range s.opts.Endpoints {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.DialTimeout)
		st, err := s.cli.Status(ctx, ep)
		cancel()
		if err == nil {
			return st.DbSize
		}
	}
	return 0
}

// View runs fn on a snapshot: every read is at the revision of the first.
// If etcd compacts that revision away while fn runs, fn runs again.
func (s *Store) View(ctx context.Context, fn func(appliance.Tx) error) error {
	if fn == nil {
		return errors.New("etcdstore: View with nil function")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return appliance.ErrClosed
	}
	for attempt := 1; ; attempt++ {
		t := s.newTx(ctx, true)
		err := fn(t)
		t.done = true
		if errors.Is(t.err, errCompacted) && attempt < s.opts.MaxAttempts {
			continue
		}
		if err == nil {
			err = t.err
		}
		return err
	}
}

// Update runs fn as an optimistic transaction (see the package doc). fn may
// run more than once.
func (s *Store) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if fn == nil {
		return errors.New("etcdstore: Update with nil function")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return appliance.ErrReadOnly
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return appliance.ErrClosed
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		committed, writes, err := s.attempt(ctx, fn, attempt > 1)
		if err != nil {
			if o, ok := s.opts.Observer.(CommitFailureObserver); ok && errors.Is(err, appliance.ErrStoreUnavailable) {
				o.ObserveCommitFailure()
			}
			return err
		}
		if committed {
			if s.opts.Observer != nil && writes > 0 {
				s.opts.Observer.ObserveCommit(time.Since(start), writes, 1)
			}
			return nil
		}
		if co, ok := s.opts.Observer.(ConflictObserver); ok {
			co.ObserveConflict()
		}
		if attempt >= s.opts.MaxAttempts {
			return fmt.Errorf("etcdstore: gave up after %d attempts: %w", attempt, appliance.ErrConflict)
		}
		wait := min(backoffBase<<min(attempt, 16), backoffCap)
		timer := time.NewTimer(rand.N(wait) + 1)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// attempt runs fn once and tries to commit its writes. committed false with
// a nil error means "run it again".
func (s *Store) attempt(ctx context.Context, fn func(appliance.Tx) error, exclusive bool) (committed bool, writes int, err error) {
	if exclusive {
		s.gate.Lock()
		defer s.gate.Unlock()
	} else {
		s.gate.RLock()
		defer s.gate.RUnlock()
	}
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	t := s.newTx(ctx, false)
	fnErr := fn(t)
	t.done = true
	switch {
	case t.ws.Err() != nil:
		// A refused write poisons the transaction even if fn ignored it.
		return false, 0, t.ws.Err()
	case errors.Is(t.err, errCompacted):
		return false, 0, nil
	case t.err != nil:
		return false, 0, t.err
	case fnErr != nil && t.stale:
		// fn refused on what may be a follower's stale snapshot (a record
		// "not found" that a quorum already has): the refusal stands only
		// if what fn read is still current, else fn runs again.
		current, err := s.confirm(ctx, t)
		if err != nil || !current {
			return false, 0, err
		}
		return false, 0, fnErr
	case fnErr != nil:
		return false, 0, fnErr
	case t.ws.Count() == 0 && !t.stale:
		// Read-only: the reads were one snapshot, nothing to commit.
		return true, 0, nil
	}
	ops := make([]clientv3.Op, 0, len(t.ws.Keys()))
	for _, k := range t.ws.Keys() {
		w, _ := t.ws.Lookup(k)
		ops = append(ops, clientv3.OpPut(s.data+k, string(encode(w))))
	}
	if len(ops) == 0 {
		// A read-only Update confirming its stale snapshot.
		ops = append(ops, s.quorumOp())
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(t.compares()...).Then(ops...).Commit()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return false, 0, fmt.Errorf("etcdstore: commit (outcome unknown): %w", ctxErr)
		}
		return false, 0, fmt.Errorf("etcdstore: commit (outcome unknown): %w: %w", appliance.ErrStoreUnavailable, err)
	}
	return resp.Succeeded, t.ws.Count(), nil
}

// quorumOp is a linearizable read of nothing. etcd serves a Txn without
// writes or linearizable reads from the member's own state (a compare-only
// Txn counts as serializable), so a Txn that must see the quorum's latest
// state carries it.
func (s *Store) quorumOp() clientv3.Op {
	return clientv3.OpGet(s.horizon, clientv3.WithCountOnly())
}

// confirm reports whether nothing t read has changed since its read
// revision: a compare-only Txn, which goes through the leader.
func (s *Store) confirm(ctx context.Context, t *tx) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(t.compares()...).Then(s.quorumOp()).Commit()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return false, ctxErr
		}
		return false, fmt.Errorf("etcdstore: confirming a read: %w: %w", appliance.ErrStoreUnavailable, err)
	}
	return resp.Succeeded, nil
}

// Close stops the background purge, waits for running Views and Updates and
// closes the client. Later calls return appliance.ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopPurging)
		s.purger.Wait()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.closeErr = fmt.Errorf("etcdstore: close: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) newTx(ctx context.Context, readOnly bool) *tx {
	return &tx{s: s, ctx: ctx, readOnly: readOnly}
}

// encode turns a pending write into its stored value.
func encode(w appliance.Write) []byte {
	if w.Delete {
		return []byte{tagTombstone}
	}
	return append([]byte{tagLive}, w.Value...)
}

// decode returns a stored value and whether it is live (not a tombstone).
func decode(v []byte) (value []byte, live bool, err error) {
	if len(v) == 0 {
		return nil, false, ErrBadValue
	}
	switch v[0] {
	case tagLive:
		return v[1:], true, nil
	case tagTombstone:
		return nil, false, nil
	}
	return nil, false, ErrBadValue
}

// readErr classifies an etcd read error.
func readErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return errCompacted
	case ctx.Err() != nil:
		return fmt.Errorf("etcdstore: read: %w", ctx.Err())
	}
	return fmt.Errorf("etcdstore: read: %w: %w", appliance.ErrStoreUnavailable, err)
}

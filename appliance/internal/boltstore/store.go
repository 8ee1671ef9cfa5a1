package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"tokend/appliance"
)

// ErrLocked means another process (another tokend) holds the database file.
// Open wraps it when the file lock is not obtained within
// Options.LockTimeout.
var ErrLocked = errors.New("boltstore: database file is locked by another process")

// bucketName is the one bucket that holds the flat key space.
const bucketName = "kv"

// Defaults of Options.
const (
	DefaultLockTimeout     = time.Second
	DefaultFileMode        = os.FileMode(0o600)
	DefaultMaxGroupWrites  = 2000
	DefaultMaxGroupBytes   = 8 << 20
	DefaultMaxGroupCallers = 256
	DefaultInitialMmapSize = 256 << 20
	// DefaultFailureHold: a load balancer polling /readyz every few
	// seconds sees a refused commit at least once or twice.
	DefaultFailureHold = 10 * time.Second
)

// appendFillPercent is how full a group holding an Update marked with
// appliance.WithAppendHint packs the pages it splits (bbolt's default is
// 0.5). Not 1.0: a later update that grows a record then splits less.
const appendFillPercent = 0.9

// CommitObserver is told about every successful group commit, for metrics
// (commit latency histogram, group size). It is called from the committer
// goroutine after the callers have been released, so it must be quick and
// must not call the Store.
type CommitObserver interface {
	// ObserveCommit reports one durable commit: how long bbolt's Commit
	// (write and fsync) took, how many Put/Delete calls it carried, and how
	// many Updates it served.
	ObserveCommit(d time.Duration, writes, callers int)
}

// CommitFailureObserver, if the Observer also implements it, is told about
// every group whose write the file refused (a failed write, fsync, growth
// or MaxSize): each of its Updates got ErrStoreUnavailable.
type CommitFailureObserver interface {
	ObserveCommitFailure()
}

// Options configures Open. The zero value gives the defaults.
type Options struct {
	// LockTimeout bounds the wait for the exclusive file lock; after it
	// Open fails with ErrLocked. 0 means DefaultLockTimeout; negative waits
	// forever.
	LockTimeout time.Duration
	// FileMode is used when the file is created. 0 means 0600.
	FileMode os.FileMode

	// Group commit bounds. A group stops taking more Updates once it holds
	// MaxGroupWrites writes, MaxGroupBytes bytes or MaxGroupCallers
	// Updates. 0 means the default. MaxGroupCallers 1 disables grouping.
	MaxGroupWrites  int
	MaxGroupBytes   int
	MaxGroupCallers int

	// InitialMmapSize is the initial size of bbolt's memory map. A writer
	// that must grow the map waits for every open read transaction, so a
	// map larger than the data keeps a long View from stalling commits.
	// Address space only: it costs no memory. 0 means the default;
	// negative means bbolt's own default.
	InitialMmapSize int
	// MaxSize caps the size of the file in bytes; a commit that would grow
	// it further fails. 0 means no limit.
	MaxSize int

	// Observer, if not nil, is told about each commit (and each refused
	// one, see CommitFailureObserver).
	Observer CommitObserver

	// FailureHold is how long Ping fails after a refused commit before it
	// probes the file with a write of its own. 0 means DefaultFailureHold;
	// negative probes at once.
	FailureHold time.Duration

	// ReadOnly opens the file without write access (a shared lock, so a
	// running tokend still excludes it): inspection commands must leave
	// the file byte for byte as it was. Update fails with ErrReadOnly.
	ReadOnly bool

	// OpenFile, if not nil, opens the database file instead of os.OpenFile
	// (bbolt's own hook). Tests use it to keep the descriptor and make its
	// writes or fsyncs fail on demand (package storefault).
	OpenFile func(name string, flag int, perm os.FileMode) (*os.File, error)
}

// ErrReadOnly is returned by Update on a store opened with ReadOnly.
var ErrReadOnly = errors.New("boltstore: store opened read-only")

func (o Options) withDefaults() Options {
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.FileMode == 0 {
		o.FileMode = DefaultFileMode
	}
	switch {
	case o.FailureHold == 0:
		o.FailureHold = DefaultFailureHold
	case o.FailureHold < 0:
		o.FailureHold = 0
	}
	if o.MaxGroupWrites <= 0 {
		o.MaxGroupWrites = DefaultMaxGroupWrites
	}
	if o.MaxGroupBytes <= 0 {
		o.MaxGroupBytes = DefaultMaxGroupBytes
	}
	if o.MaxGroupCallers <= 0 {
		o.MaxGroupCallers = DefaultMaxGroupCallers
	}
	switch {
	case o.InitialMmapSize == 0:
		o.InitialMmapSize = DefaultInitialMmapSize
	case o.InitialMmapSize < 0:
		o.InitialMmapSize = 0
	}
	return o
}

// Store is the bbolt appliance.Store. Create it with Open.
type Store struct {
	db   *bolt.DB
	path string
	opts Options

	// mu guards closed. Views and Backups hold it shared for their whole
	// run and Updates while they enqueue, so Close (exclusive) waits for
	// them and then closes reqs.
	mu     sync.RWMutex
	closed bool

	reqs      chan *request // to the committer
	committer chan struct{} // closed when the committer has exited

	closeOnce sync.Once
	closeErr  error

	batch []*request // the committer's group, reused

	// failedAt is when a group's write was last refused (UnixNano), 0
	// once a durable commit (or a probe, see Ping) went through since.
	failedAt atomic.Int64
	// probeMu serialises Ping's write probes; after a failed one, Pings
	// answer its error until nextProbe, so callers of an open endpoint
	// (/readyz) cannot turn a failing disk into a stream of fsyncs.
	probeMu   sync.Mutex
	nextProbe time.Time
	probeErr  error
}

// probeEvery is the least time between two write probes after one failed.
const probeEvery = time.Second

var _ appliance.Store = (*Store)(nil)

// Request states; the caller and the committer race to move a request out
// of queued.
const (
	queued   int32 = iota
	taken          // the committer will run it and deliver a result
	canceled       // the caller's context ended first; the committer skips it
)

// request is one Update waiting for, or in, a group.
type request struct {
	ctx   context.Context
	fn    func(appliance.Tx) error
	state atomic.Int32
	done  chan struct{} // closed when err (or panicked) is final

	err      error
	panicked bool
	panicVal any

	t *tx // the overlay of the current run, nil if fn failed
}

// Open opens (creating if needed) the database file at path and starts its
// committer. A second Open of a file in use fails after opts.LockTimeout
// with an error wrapping ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	return open(path, opts, boltOptions(opts))
}

// boltOptions are the bbolt options Open uses for opts (with defaults).
func boltOptions(opts Options) *bolt.Options {
	timeout := opts.LockTimeout
	if timeout < 0 {
		timeout = 0 // bbolt: wait forever
	}
	return &bolt.Options{
		Timeout:         timeout,
		InitialMmapSize: opts.InitialMmapSize,
		MaxSize:         opts.MaxSize,
		// The freelist is written at every commit (a page or two), so an
		// open reads it instead of walking the whole tree to rebuild it:
		// 52 s cold at a million tokens, 1 ms synced (BENCHMARKS.md,
		// TestBigStoreOpen). A file last written unsynced is scanned once,
		// at its first open. The hashmap freelist stays fast when
		// fragmented.
		NoFreelistSync: false,
		FreelistType:   bolt.FreelistMapType,
		ReadOnly:       opts.ReadOnly,
		OpenFile:       opts.OpenFile,
	}
}

// open is Open with the bbolt options given (the cold-open measurement
// compares freelist settings through it).
func open(path string, opts Options, bo *bolt.Options) (*Store, error) {
	db, err := bolt.Open(path, opts.FileMode, bo)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: no lock within %v: %w", path, opts.LockTimeout, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if opts.ReadOnly {
		err = db.View(func(tx *bolt.Tx) error {
			if tx.Bucket([]byte(bucketName)) == nil {
				return errors.New("no tokend bucket")
			}
			return nil
		})
	} else {
		err = db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists([]byte(bucketName))
			return err
		})
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: bucket: %w", path, err)
	}
	s := &Store{
		db:        db,
		path:      path,
		opts:      opts,
		reqs:      make(chan *request, opts.MaxGroupCallers),
		committer: make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Size returns the size of the database file in bytes, or 0 if it cannot
// be read. It is meant for metrics.
func (s *Store) Size() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// View runs fn in a read-only bbolt transaction: a consistent snapshot that
// commits during fn do not change.
func (s *Store) View(ctx context.Context, fn func(appliance.Tx) error) error {
	if fn == nil {
		return errors.New("boltstore: View with nil function")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return appliance.ErrClosed
	}
	var fnErr error
	err := s.db.View(func(btx *bolt.Tx) error {
		t := &tx{b: btx.Bucket([]byte(bucketName)), readOnly: true, ws: appliance.WriteSet{MaxKeySize: bolt.MaxKeySize}}
		defer func() { t.done = true }()
		fnErr = fn(t)
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: view: %w", err)
	}
	return fnErr
}

// Check runs bbolt's consistency check (every page reachable once, the
// freelist and the tree agree, keys in order) on a snapshot and returns
// every problem found, joined. It only reads, so a read-only store works.
func (s *Store) Check() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return appliance.ErrClosed
	}
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// commitFailed records a refused group write.
func (s *Store) commitFailed() {
	s.failedAt.Store(time.Now().UnixNano())
	if o, ok := s.opts.Observer.(CommitFailureObserver); ok {
		o.ObserveCommitFailure()
	}
}

// probeBucket holds the one key Ping writes; it is apart from the data, so
// no View, Scan, backup reader or migration sees it.
const probeBucket = "probe"

// Ping tells whether the store can make a write durable. While the last
// group's write went through it only reads a flag. After a refused write
// it fails for Options.FailureHold, then commits a small probe (write and
// fsync, outside the data) and succeeds when that goes through: a disk
// that was full or failing is seen healed without waiting for the traffic
// that a failing /readyz keeps away. The hold is there because a probe of
// a few pages can fit in the file's free pages while real commits need
// the disk to grow. A failed probe is not repeated for probeEvery. The
// error wraps appliance.ErrStoreUnavailable.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	failed := s.failedAt.Load()
	if failed == 0 {
		return nil
	}
	if ago := time.Since(time.Unix(0, failed)); ago < s.opts.FailureHold {
		return fmt.Errorf("boltstore: a commit was refused %s ago: %w", ago.Round(time.Millisecond), appliance.ErrStoreUnavailable)
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if s.failedAt.Load() == 0 {
		return nil // a commit or another probe went through meanwhile
	}
	if time.Now().Before(s.nextProbe) {
		return s.probeErr
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return appliance.ErrClosed
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	stamp := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(probeBucket))
		if err != nil {
			return err
		}
		return b.Put([]byte("write"), stamp)
	})
	if err != nil {
		s.probeErr = fmt.Errorf("boltstore: write probe: %w: %w", appliance.ErrStoreUnavailable, err)
		s.nextProbe = time.Now().Add(probeEvery)
		return s.probeErr
	}
	s.probeErr, s.nextProbe = nil, time.Time{}
	s.failedAt.CompareAndSwap(failed, 0) // a newer refusal keeps its hold
	return nil
}

// Backup writes a consistent copy of the whole database to w while readers
// and writers go on, and returns the number of bytes written. The copy is
// a bbolt file that Open accepts.
func (s *Store) Backup(w io.Writer) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, appliance.ErrClosed
	}
	var n int64
	err := s.db.View(func(btx *bolt.Tx) error {
		var err error
		n, err = btx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: backup: %w", err)
	}
	return n, nil
}

// Update queues fn for the committer and waits until the group commit that
// holds its writes is durable. If ctx ends while fn is still queued, Update
// returns ctx's error and fn never runs; once fn has started, Update waits
// for the outcome. A panic in fn is re-raised in the caller.
func (s *Store) Update(ctx context.Context, fn func(appliance.Tx) error) error {
	if fn == nil {
		return errors.New("boltstore: Update with nil function")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return appliance.ErrClosed
	}
	s.reqs <- r
	s.mu.RUnlock()

	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, canceled) {
			return ctx.Err()
		}
		<-r.done // taken: the outcome is coming
	}
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// Close waits for queued and in-flight Updates, Views and Backups, then
// closes the file. Later calls return appliance.ErrClosed; Close may be
// called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		<-s.committer
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("boltstore: close: %w", err)
		}
	})
	return s.closeErr
}

// maxGroupYields bounds the yields before a group forms (see run).
const maxGroupYields = 8

// run is the committer: it forms and commits one group at a time until
// reqs is closed and drained.
func (s *Store) run() {
	defer close(s.committer)
	for r := range s.reqs {
		// The first Update to reach an idle committer wakes it at once,
		// while callers that are still running their own work (an RSA
		// decryption, a request's parsing) would join a group a moment
		// later. Yield while the queue grows, at most maxGroupYields
		// times: with nothing else runnable this returns at once, and on
		// a busy core the group fills instead of the next fsync going out
		// for a few callers (CT-KIP on one core: 4.1 to 6.1 exchanges
		// per commit, BENCHMARKS.md).
		for n, i := len(s.reqs), 0; i < maxGroupYields; i++ {
			runtime.Gosched()
			m := len(s.reqs)
			if m == n {
				break
			}
			n = m
		}
		s.commitGroup(r)
		// Let the callers just released run before the next group forms:
		// a caller that writes again at once then joins it instead of
		// waiting a whole commit for the one after. This is a yield, not a
		// timed wait: with nothing else runnable it returns at once.
		runtime.Gosched()
	}
}

// commitGroup runs first and every Update queued meanwhile (within the
// group bounds) in one bbolt write transaction and commits it once.
func (s *Store) commitGroup(first *request) {
	batch := append(s.batch[:0], first)
	var rejected []*request // failed to apply; removed from the group
	defer func() {
		clear(batch[:cap(batch)]) // drop references to finished requests
		s.batch = batch[:0]
	}()

	for {
		btx, err := s.db.Begin(true)
		if err != nil {
			// Begin fails only when the file cannot be used (closed,
			// or a remap after a failed commit): the store is unusable.
			err = fmt.Errorf("boltstore: begin: %w: %w", appliance.ErrStoreUnavailable, err)
			s.commitFailed()
			for _, r := range batch {
				if r.err == nil && !r.panicked {
					r.err = err
				}
			}
			s.deliver(batch, rejected)
			return
		}
		b := btx.Bucket([]byte(bucketName))
		writes, nbytes := 0, 0
		badApply := -1
		for i := 0; ; i++ {
			if i == len(batch) {
				if writes >= s.opts.MaxGroupWrites || nbytes >= s.opts.MaxGroupBytes ||
					len(batch) >= s.opts.MaxGroupCallers {
					break
				}
				next := s.receive()
				if next == nil {
					break
				}
				batch = append(batch, next)
			}
			r := batch[i]
			if !s.run1(r, b) {
				continue
			}
			if err := r.t.apply(b); err != nil {
				r.err, r.t = err, nil
				badApply = i
				break
			}
			writes += r.t.ws.Count()
			nbytes += r.t.ws.Size()
		}

		if badApply >= 0 {
			// The shared transaction holds part of a caller's writes and
			// cannot be trusted: throw it away and run the rest again (a
			// function may run more than once).
			_ = btx.Rollback()
			rejected = append(rejected, batch[badApply])
			batch = append(batch[:badApply], batch[badApply+1:]...)
			for _, r := range batch {
				r.err, r.t, r.panicked, r.panicVal = nil, nil, false, nil
			}
			if len(batch) == 0 {
				s.deliver(batch, rejected)
				return
			}
			continue
		}

		if writes == 0 {
			// Nothing to make durable: skip the fsync.
			_ = btx.Rollback()
			s.deliver(batch, rejected)
			return
		}
		for _, r := range batch {
			if r.t != nil && appliance.AppendHint(r.ctx) {
				// Split pages are packed at spill time (Commit): appended
				// keys never refill a page left half full.
				b.FillPercent = appendFillPercent
				break
			}
		}
		start := time.Now()
		err = btx.Commit()
		d := time.Since(start)
		callers := 0
		for _, r := range batch {
			if r.t == nil {
				continue
			}
			callers++
			if err != nil {
				// bbolt rolled the transaction back. Every Commit error is
				// the file refusing a write, an fsync, a growth or MaxSize.
				r.err = fmt.Errorf("boltstore: commit: %w: %w", appliance.ErrStoreUnavailable, err)
			}
		}
		s.deliver(batch, rejected)
		if err != nil {
			s.commitFailed()
			return
		}
		s.failedAt.Store(0)
		if s.opts.Observer != nil {
			s.opts.Observer.ObserveCommit(d, writes, callers)
		}
		return
	}
}

// receive returns a queued request without waiting, or nil.
func (s *Store) receive() *request {
	select {
	case r, ok := <-s.reqs:
		if !ok {
			return nil
		}
		return r
	default:
		return nil
	}
}

// run1 runs r's function against a fresh overlay of b. It reports whether
// the function succeeded, leaving its overlay in r.t; otherwise r holds
// the outcome.
func (s *Store) run1(r *request, b *bolt.Bucket) (ok bool) {
	r.t = nil
	if !r.state.CompareAndSwap(queued, taken) && r.state.Load() != taken {
		return false // the caller gave up while it was queued
	}
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return false
	}
	t := &tx{b: b, ws: appliance.WriteSet{MaxKeySize: bolt.MaxKeySize}}
	defer func() {
		t.done = true
		if p := recover(); p != nil {
			r.panicked, r.panicVal = true, p
			ok = false
		}
	}()
	err := r.fn(t)
	switch {
	case t.ws.Err() != nil:
		// A failed write poisons the transaction even if fn ignored it.
		r.err = t.ws.Err()
	case err != nil:
		r.err = err
	default:
		r.t = t
		return true
	}
	return false
}

// deliver releases the callers of batch and rejected (skipping those that
// gave up while queued).
func (s *Store) deliver(batch, rejected []*request) {
	for _, rs := range [][]*request{batch, rejected} {
		for _, r := range rs {
			r.t = nil
			if r.state.Load() == canceled {
				continue
			}
			close(r.done)
		}
	}
}

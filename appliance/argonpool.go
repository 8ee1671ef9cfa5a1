package appliance

import (
	"container/list"
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// ErrBusy is the refusal of a password or PIN check that waited too long
// for memory: too many argon2id evaluations were already running. Doors
// answer it with "try again shortly" (HTTP 429 with Retry-After).
var ErrBusy = errors.New("too many password checks in progress; try again shortly")

// Every argon2id evaluation allocates its whole memory parameter at once
// (64 MiB for an admin password, 19 MiB for a PIN). Unbounded, n concurrent
// sign-ins cost n x 64 MiB, and the garbage collector lets the heap grow to
// a multiple of that before it reclaims any (the finding: 8 concurrent
// wrong passwords took the process from 433 MB to 2.7 GB). argonPool admits
// evaluations while the memory they hold stays within a budget, in arrival
// order, and refuses the ones that cannot start within a short wait.
type argonPool struct {
	budget int64 // KiB
	wait   time.Duration

	mu      sync.Mutex
	used    int64
	waiters list.List // of *argonWaiter, first come first served

	evals, refused atomic.Uint64
}

type argonWaiter struct {
	need  int64
	ready chan struct{}
}

// DefaultArgonSlots is the number of admin-password evaluations (64 MiB
// each) that may run at once when Config.ArgonSlots is zero: one per core,
// at most two. Each evaluation already uses two cores (p=2), so more slots
// add memory, not throughput.
func DefaultArgonSlots() int {
	return min(max(runtime.NumCPU(), 1), 2)
}

// DefaultArgonWait is how long a check waits for memory before ErrBusy.
const DefaultArgonWait = 2 * time.Second

func newArgonPool(slots int, wait time.Duration) *argonPool {
	if slots <= 0 {
		slots = DefaultArgonSlots()
	}
	if wait <= 0 {
		wait = DefaultArgonWait
	}
	return &argonPool{budget: int64(slots) * adminArgonMemory, wait: wait}
}

// idKey is argon2.IDKey run within the memory budget. It waits at most the
// pool's wait (or until ctx ends) for memory, then fails with ErrBusy.
func (p *argonPool) idKey(ctx context.Context, password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) ([]byte, error) {
	need := min(int64(memory), p.budget) // a larger hash still runs, alone
	if err := p.acquire(ctx, need); err != nil {
		p.refused.Add(1)
		return nil, err
	}
	defer p.release(need)
	p.evals.Add(1)
	key := argon2.IDKey(password, salt, time, memory, threads, keyLen)
	if need >= bigArgonKiB {
		// Reclaim the evaluation's memory before the next one may start:
		// otherwise the collector lets the heap grow to GOGC percent above
		// the live set (tokend runs with 400) before it reuses any, and
		// the budget bounds only live memory, not resident memory. Admin
		// sign-ins are rare and rate-limited; a collection of a small heap
		// costs far less than the 64 MiB evaluation before it.
		runtime.GC()
	}
	return key, nil
}

// bigArgonKiB: evaluations from this size on are followed by a collection.
const bigArgonKiB = 32 * 1024

func (p *argonPool) acquire(ctx context.Context, need int64) error {
	p.mu.Lock()
	if p.waiters.Len() == 0 && p.used+need <= p.budget {
		p.used += need
		p.mu.Unlock()
		return nil
	}
	w := &argonWaiter{need: need, ready: make(chan struct{})}
	elem := p.waiters.PushBack(w)
	p.mu.Unlock()

	timer := time.NewTimer(p.wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-timer.C:
		err = ErrBusy
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-w.ready:
		return nil // granted while giving up: keep it, the caller proceeds
	default:
	}
	front := p.waiters.Front() == elem
	p.waiters.Remove(elem)
	if front {
		p.grantLocked() // a smaller waiter behind us may fit now
	}
	return err
}

func (p *argonPool) release(n int64) {
	p.mu.Lock()
	p.used -= n
	p.grantLocked()
	p.mu.Unlock()
}

// grantLocked admits waiters in order while the first one fits.
func (p *argonPool) grantLocked() {
	for e := p.waiters.Front(); e != nil; e = p.waiters.Front() {
		w := e.Value.(*argonWaiter)
		if p.used+w.need > p.budget {
			return
		}
		p.used += w.need
		p.waiters.Remove(e)
		close(w.ready)
	}
}

// ArgonStats describes the argon2id evaluations of a Service.
type ArgonStats struct {
	Evaluations uint64 // argon2id evaluations run
	Refused     uint64 // checks refused with ErrBusy (or ended by their context) before running
	BudgetKiB   int64  // memory the evaluations may hold at once
	InUseKiB    int64  // memory held now
}

// ArgonStats reports the password-hashing pool's counters. Only tests
// read them today; no metric exports them yet.
func (s *Service) ArgonStats() ArgonStats {
	p := s.argon
	p.mu.Lock()
	used := p.used
	p.mu.Unlock()
	return ArgonStats{Evaluations: p.evals.Load(), Refused: p.refused.Load(), BudgetKiB: p.budget, InUseKiB: used}
}

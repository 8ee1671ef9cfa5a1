package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// runnerTTL is the lease of the elected runner on etcd: a runner that dies
// (or loses etcd) is replaced within about this long.
const runnerTTL = 10 * time.Second

// runner says whether this node runs the scheduled work (LDAP sync
// schedules, purges, sweeps, scheduled rollouts, the etcd tombstone purge).
// On bbolt there is one node and it always runs them; on etcd the nodes
// elect one with concurrency.Election, and another takes over when its
// lease ends. Manual work (a sync started by an admin) runs on any node.
type runner struct {
	leader atomic.Bool
	onSet  func(bool) // metrics; may be nil
	done   chan struct{}
}

// newLocalRunner is the runner of a single node (bbolt): always elected.
func newLocalRunner(onSet func(bool)) *runner {
	r := &runner{onSet: onSet, done: make(chan struct{})}
	r.set(true)
	close(r.done)
	return r
}

// IsLeader reports whether this node runs the scheduled work now.
func (r *runner) IsLeader() bool { return r.leader.Load() }

// Done is closed once the election loop has stopped.
func (r *runner) Done() <-chan struct{} { return r.done }

func (r *runner) set(v bool) {
	if r.leader.Swap(v) != v || v {
		if r.onSet != nil {
			r.onSet(v)
		}
	}
}

// runnerElectionPrefix puts the election beside the store's key space,
// not in it, so the store's scans never see it: /tokend/ → /tokend.runner/.
func runnerElectionPrefix(storePrefix string) string {
	return strings.TrimSuffix(storePrefix, "/") + ".runner/"
}

// startEtcdRunner campaigns for the runner role until ctx ends, as node
// (a name for logs and etcdctl; not secret). ttl is the lease in seconds.
func startEtcdRunner(ctx context.Context, cli *clientv3.Client, storePrefix, node string, ttl time.Duration,
	log *slog.Logger, onSet func(bool)) *runner {
	r := &runner{onSet: onSet, done: make(chan struct{})}
	r.set(false)
	go r.campaign(ctx, cli, runnerElectionPrefix(storePrefix), node, max(1, int(ttl/time.Second)), log)
	return r
}

func (r *runner) campaign(ctx context.Context, cli *clientv3.Client, pfx, node string, ttl int, log *slog.Logger) {
	defer close(r.done)
	retry := time.Second
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("runner election: no etcd session; retrying", "err", err)
				sleepCtx(ctx, retry)
			}
			continue
		}
		e := concurrency.NewElection(sess, pfx)
		// Campaign returns when this node holds the role, or when the
		// session ends (its lease expired) or ctx does.
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
			case <-cctx.Done():
			}
			cancel()
		}()
		err = e.Campaign(cctx, node)
		if err == nil {
			r.set(true)
			log.Info("this node runs the scheduled work", "node", node)
			select {
			case <-sess.Done():
				r.set(false)
				log.Warn("runner lease lost; another node takes the scheduled work", "node", node)
			case <-ctx.Done():
				r.set(false)
				// Resign so another node need not wait for the lease to end.
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = e.Resign(rctx)
				rcancel()
			}
		} else if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			log.Warn("runner election failed; retrying", "err", err)
			sleepCtx(ctx, retry)
		}
		cancel()
		_ = sess.Close()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// every runs fn every interval while this node is the runner, until ctx
// ends. fn is not called on a node that is not the runner.
func (r *runner) every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.IsLeader() {
			fn(ctx)
		}
	}
}

// startRunner elects the runner among the nodes on an etcd store (always
// this node on bbolt), reports it in tokend_runner_leader, and runs the
// store's own upkeep there: the etcd tombstone purge, which every node
// used to run on its own.
func startRunner(ctx context.Context, st *openedStore, node string, log *slog.Logger, onSet func(bool)) *runner {
	if st.Etcd == nil {
		return newLocalRunner(onSet)
	}
	r := startEtcdRunner(ctx, st.Etcd.Client(), st.Etcd.Prefix(), node, runnerTTL, log, onSet)
	go r.every(ctx, tombstonePurgeEvery, func(ctx context.Context) {
		if n, err := st.Etcd.PurgeTombstones(ctx); err != nil {
			log.Warn("purging etcd tombstones", "err", err)
		} else if n > 0 {
			log.Debug("purged etcd tombstones", "count", n)
		}
	})
	return r
}

// tombstonePurgeEvery is etcdstore's default purge interval.
const tombstonePurgeEvery = 10 * time.Minute

// runNowAndEvery is every, with a first run at once (if this node is the
// runner).
func (r *runner) runNowAndEvery(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	if r.IsLeader() {
		fn(ctx)
	}
	r.every(ctx, interval, fn)
}

// nodesPrefix holds one presence key per running node, beside the store's
// key space: /tokend/ → /tokend.nodes/. `tokend rekey` counts them.
func nodesPrefix(storePrefix string) string {
	return strings.TrimSuffix(storePrefix, "/") + ".nodes/"
}

// announceNode puts this node's presence key under a lease of ttl kept
// alive until the returned stop is called (which revokes it). serve calls
// it before the store's key check: a rotation that begins after the put
// sees the node, and one that began before it has its journal in the
// store, which the key check refuses. So a node and a rotation never run
// at once. A node that dies leaves its key until the lease ends; a lease
// lost to a long etcd outage is replaced by a new one once etcd answers.
func announceNode(ctx context.Context, cli *clientv3.Client, storePrefix, node string, ttl time.Duration) (stop func(), err error) {
	put := func(ctx context.Context) (clientv3.LeaseID, <-chan *clientv3.LeaseKeepAliveResponse, error) {
		lease, err := cli.Grant(ctx, max(1, int64(ttl/time.Second)))
		if err != nil {
			return 0, nil, fmt.Errorf("announcing node %s on etcd: %w", node, err)
		}
		key := fmt.Sprintf("%s%s/%x", nodesPrefix(storePrefix), node, int64(lease.ID))
		if _, err := cli.Put(ctx, key, node, clientv3.WithLease(lease.ID)); err != nil {
			return 0, nil, fmt.Errorf("announcing node %s on etcd: %w", node, err)
		}
		alive, err := cli.KeepAlive(ctx, lease.ID)
		if err != nil {
			return 0, nil, fmt.Errorf("announcing node %s on etcd: %w", node, err)
		}
		return lease.ID, alive, nil
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	id, alive, err := put(kctx)
	if err != nil {
		cancel()
		return nil, err
	}
	var (
		mu   sync.Mutex
		last = id
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for kctx.Err() == nil {
			for range alive { // drained until the keep-alive ends
			}
			for kctx.Err() == nil {
				id, a, err := put(kctx)
				if err == nil {
					mu.Lock()
					last, alive = id, a
					mu.Unlock()
					break
				}
				sleepCtx(kctx, time.Second)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		mu.Lock()
		id := last
		mu.Unlock()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer rcancel()
		_, _ = cli.Revoke(rctx, id)
	}, nil
}

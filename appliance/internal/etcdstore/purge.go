package etcdstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tokend/appliance"
)

// purgeBatch is how many tombstones one purge Txn removes.
const purgeBatch = 100

// PurgeTombstones removes tombstones (deleted keys) older than this call,
// and returns how many it removed. It first writes the horizon key, which
// makes every Update that read before that write run again (see the package
// doc); tombstones written after the horizon stay for the next purge. Safe
// to run on several nodes at once: a tombstone rewritten meanwhile is left.
func (s *Store) PurgeTombstones(ctx context.Context) (int, error) {
	if s.opts.ReadOnly {
		return 0, appliance.ErrReadOnly
	}
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	hr, err := s.cli.Put(ctx, s.horizon, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return 0, fmt.Errorf("etcdstore: purge: horizon: %w: %w", appliance.ErrStoreUnavailable, err)
	}
	horizon := hr.Header.Revision
	purged := 0
	next := s.data
	for {
		// Plain pages, no MinModRev/MaxModRev filter: with a filter etcd
		// reads the whole rest of the range for every page before it
		// truncates, quadratic in the store's size.
		resp, err := s.cli.Get(ctx, next, clientv3.WithRange(s.dataEnd), clientv3.WithLimit(scanPage))
		if err != nil {
			return purged, fmt.Errorf("etcdstore: purge: %w: %w", appliance.ErrStoreUnavailable, err)
		}
		var cmps []clientv3.Cmp
		var dels []clientv3.Op
		flush := func() error {
			if len(dels) == 0 {
				return nil
			}
			n, err := s.deleteTombstones(ctx, cmps, dels)
			purged += n
			cmps, dels = cmps[:0], dels[:0]
			return err
		}
		for _, kv := range resp.Kvs {
			if len(kv.Value) != 1 || kv.Value[0] != tagTombstone || kv.ModRevision >= horizon {
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
			dels = append(dels, clientv3.OpDelete(string(kv.Key)))
			if len(dels) == purgeBatch {
				if err := flush(); err != nil {
					return purged, err
				}
			}
		}
		if err := flush(); err != nil {
			return purged, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		next = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return purged, nil
}

// deleteTombstones removes a batch whose tombstones are unchanged; if one
// was rewritten meanwhile, the rest go one by one.
func (s *Store) deleteTombstones(ctx context.Context, cmps []clientv3.Cmp, dels []clientv3.Op) (int, error) {
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(dels...).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcdstore: purge: %w: %w", appliance.ErrStoreUnavailable, err)
	}
	if resp.Succeeded {
		return len(dels), nil
	}
	n := 0
	for i := range dels {
		resp, err := s.cli.Txn(ctx).If(cmps[i]).Then(dels[i]).Commit()
		if err != nil {
			return n, fmt.Errorf("etcdstore: purge: %w: %w", appliance.ErrStoreUnavailable, err)
		}
		if resp.Succeeded {
			n++
		}
	}
	return n, nil
}

// purgeLoop purges every PurgeInterval (±10 %, so nodes started together
// drift apart) until Close. Errors are left for the next round: a purge
// only reclaims space.
func (s *Store) purgeLoop() {
	defer s.purger.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stopPurging
		cancel()
	}()
	for {
		d := s.opts.PurgeInterval
		d += time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
		select {
		case <-s.stopPurging:
			return
		case <-time.After(d):
		}
		_, _ = s.PurgeTombstones(ctx)
	}
}

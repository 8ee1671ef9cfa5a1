package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tokend/appliance"
	"tokend/internal/etcdtest"
)

// runClients runs b.N operations spread over clients goroutines and
// reports the rate.
func runClients(b *testing.B, clients int, op func(client, i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		n := b.N / clients
		if c < b.N%clients {
			n++
		}
		wg.Go(func() {
			for i := range n {
				if err := op(c, i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "txn/s")
}

// BenchmarkEtcdCAS is the raw etcd-client compare-and-swap rate, each
// client on its own key: Txn(If(ModRevision == last)).Then(Put).Else(Get),
// the floor under any optimistic Store Update.
//
//	go test -run '^$' -bench 'BenchmarkEtcd' -benchtime 3s ./appliance/internal/etcdstore/
func BenchmarkEtcdCAS(b *testing.B) {
	c := etcdtest.Start(b)
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			revs := make([]int64, clients)
			ctx := context.Background()
			run := time.Now().UnixNano() // fresh keys for each of the framework's runs
			runClients(b, clients, func(client, i int) error {
				k := fmt.Sprintf("/bench-cas/%d/%d/%d", run, clients, client)
				resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", revs[client])).
					Then(clientv3.OpPut(k, strconv.Itoa(i))).Else(clientv3.OpGet(k)).Commit()
				if err != nil {
					return err
				}
				if !resp.Succeeded {
					return fmt.Errorf("CAS on a private key failed")
				}
				revs[client] = resp.Header.Revision
				return nil
			})
		})
	}
}

// conflictCounter counts commits and lost attempts (an Observer).
type conflictCounter struct{ commits, conflicts atomic.Int64 }

func (c *conflictCounter) ObserveCommit(time.Duration, int, int) { c.commits.Add(1) }
func (c *conflictCounter) ObserveConflict()                      { c.conflicts.Add(1) }

// BenchmarkEtcdStoreUpdate is Store.Update of one record per client: read
// it, write it back changed (a Get, then the Txn with its compares). The
// shared rows have every client on one record, the hot-key case: they
// report lost attempts per committed Update.
func BenchmarkEtcdStoreUpdate(b *testing.B) {
	c := etcdtest.Start(b)
	for _, r := range []struct {
		clients int
		shared  bool
	}{{1, false}, {16, false}, {16, true}} {
		name := fmt.Sprintf("clients=%d", r.clients)
		if r.shared {
			name += "/one-key"
		}
		b.Run(name, func(b *testing.B) {
			obs := &conflictCounter{}
			s, err := Open(context.Background(), Options{Endpoints: c.Endpoints(), Observer: obs,
				Prefix: fmt.Sprintf("/bench-store/%d/%d/", time.Now().UnixNano(), r.clients), PurgeInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			runClients(b, r.clients, func(client, i int) error {
				k := []byte("rec/" + strconv.Itoa(client))
				if r.shared {
					k = []byte("rec/shared")
				}
				return s.Update(ctx, func(tx appliance.Tx) error {
					v, err := tx.Get(k)
					if err != nil && !errors.Is(err, appliance.ErrNotFound) {
						return err
					}
					return tx.Put(k, append(v[:0:0], strconv.Itoa(i)...))
				})
			})
			b.ReportMetric(float64(obs.conflicts.Load())/float64(max(obs.commits.Load(), 1)), "conflicts/update")
		})
	}
}

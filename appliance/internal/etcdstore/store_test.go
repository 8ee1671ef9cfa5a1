package etcdstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"tokend/appliance"
	"tokend/appliance/storetest"
	"tokend/internal/etcdtest"
)

// prefixes gives every store of a test run its own key space on the one
// member the package's tests share.
var prefixSeq atomic.Int64

// newStore opens a store with a fresh prefix on c.
func newStore(t *testing.T, c *etcdtest.Cluster, opts Options) *Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = fmt.Sprintf("/test%d/", prefixSeq.Add(1))
	}
	opts.Endpoints = c.Endpoints()
	if opts.PurgeInterval == 0 {
		opts.PurgeInterval = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStoreContract(t *testing.T) {
	c := etcdtest.Start(t)
	storetest.Run(t, func(t *testing.T) appliance.Store { return newStore(t, c, Options{}) })
}

func TestServiceScenario(t *testing.T) {
	c := etcdtest.Start(t)
	storetest.RunService(t, func(t *testing.T) appliance.Store { return newStore(t, c, Options{}) })
}

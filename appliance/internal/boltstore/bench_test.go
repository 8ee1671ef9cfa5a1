package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"tokend/appliance"
)

// BenchmarkCommit compares ways to make single-record Updates durable under
// concurrency: one bbolt Update per write, bbolt's Batch with a 1 ms delay,
// and this package's group commit. Each op is one transaction writing one
// ~200-byte record under a distinct key, fsync'd before it returns. Besides
// ns/op it reports writes/s and the process CPU time (user+sys) per write.
func BenchmarkCommit(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 200)
	type impl struct {
		name   string
		update func(s *Store, key []byte) error
	}
	impls := []impl{
		{"bolt-update", func(s *Store, key []byte) error {
			return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucketName)).Put(key, value) })
		}},
		{"bolt-batch-1ms", func(s *Store, key []byte) error {
			return s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket([]byte(bucketName)).Put(key, value) })
		}},
		{"group-commit", func(s *Store, key []byte) error {
			return s.Update(context.Background(), func(tx appliance.Tx) error { return tx.Put(key, value) })
		}},
	}
	for _, im := range impls {
		for _, writers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/writers=%d", im.name, writers), func(b *testing.B) {
				// The same file settings for all three; the plain bbolt rows
				// use the Store's DB directly and leave its committer idle.
				obs := &observer{}
				s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{Observer: obs})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				s.db.MaxBatchDelay = time.Millisecond // never bbolt's 10 ms default
				runCommitBench(b, writers, func(key []byte) error { return im.update(s, key) })
				if obs.commits > 0 {
					b.ReportMetric(float64(obs.callers)/float64(obs.commits), "writes/commit")
					b.ReportMetric(float64(obs.commitTime.Microseconds())/float64(obs.commits), "µs/commit")
				}
			})
		}
	}
}

func runCommitBench(b *testing.B, writers int, update func(key []byte) error) {
	var next atomic.Int64
	n := int64(b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				key := make([]byte, 12)
				copy(key, "bch/")
				binary.BigEndian.PutUint64(key[4:], uint64(i))
				if err := update(key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/write")
}

// cpuTime returns the process's user+sys CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Package boltstore is the bbolt implementation of appliance.Store, the
// appliance's default, single-node storage. Only the main package (the
// composition root) imports it; everything else sees appliance.Store.
//
// It owns the database file: opening it with an exclusive lock that fails
// fast (ErrLocked) when another tokend holds it, the one bucket that holds
// the flat key space, hot backups (Backup) and the file size for metrics.
//
// Durability and throughput. Every Update is fsync'd before it returns. A
// lone fsync'd commit costs ≈350 µs on the target machines, so one commit per
// Update would cap the appliance at a few thousand writes per second and
// waste CPU. Instead a single committer goroutine runs group commit: callers
// queue their functions; the committer takes the first one immediately (no
// artificial delay for a lone writer), runs it and every function that has
// queued meanwhile inside one bbolt write transaction, and makes the whole
// group durable with one commit. While that commit's fsync is in flight, new
// arrivals queue up and form the next group, so group size follows load.
//
// Isolation inside a group. Each function runs against an overlay Tx: its
// writes are buffered (its own Gets and Scans see them, merged with the
// shared transaction), and only if it returns nil are they applied to the
// shared bbolt transaction, in order. A function that fails therefore leaves
// nothing, and later functions of the group see exactly the writes of the
// successful earlier ones: the group is a serial schedule. If the commit
// fails (a write, fsync or growth of the file refused: full or failing
// disk, MaxSize), bbolt rolls it back and every caller whose writes were in
// it gets an error wrapping appliance.ErrStoreUnavailable and the cause;
// reads go on, and the next commit tries the disk again.
//
// Opening. The freelist is written at every commit, so Open reads one page
// of it instead of walking the whole file to rebuild it (TestBigStoreOpen).
package boltstore

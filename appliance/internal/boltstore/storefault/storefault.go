// Package storefault makes the database file under a boltstore fail its
// writes or fsyncs on demand, for tests of what a full or failing disk does
// to tokend. It swaps what the file's descriptor points at (dup3), so bbolt
// meets real failing system calls; nothing in bbolt or boltstore is mocked.
package storefault

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Mode is what a failing file does.
type Mode int

const (
	// Healthy: the descriptor points at the database file.
	Healthy Mode = iota
	// NoSpace: writes fail with ENOSPC (the descriptor points at
	// /dev/full), and so do growth and fsync.
	NoSpace
	// SyncFails: writes seem to succeed but are lost and fsync fails with
	// EINVAL (the descriptor points at /dev/null), as on a disk whose
	// write-back failed.
	SyncFails
)

// File is an opener for boltstore.Options.OpenFile that remembers the
// descriptor it opened. The zero value is ready; one File serves one open.
type File struct {
	mu    sync.Mutex
	f     *os.File // what bbolt holds; its fd is swapped under it
	saved int      // a duplicate of the real file's descriptor while failing
	mode  Mode
}

// OpenFile opens the file as os.OpenFile does and keeps its descriptor.
func (ff *File) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.f != nil {
		_ = f.Close()
		return nil, errors.New("storefault: File opened twice")
	}
	ff.f, ff.saved = f, -1
	return f, nil
}

// Set makes the file fail as m says (Healthy restores it). The file lock
// bbolt holds stays with the real file throughout: a duplicate of its
// descriptor is kept open while another one is in its place.
func (ff *File) Set(m Mode) error {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if ff.f == nil {
		return errors.New("storefault: nothing opened")
	}
	if m == ff.mode {
		return nil
	}
	fd := int(ff.f.Fd())
	if ff.saved < 0 {
		saved, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("storefault: dup: %w", err)
		}
		ff.saved = saved
	}
	var src int
	switch m {
	case Healthy:
		src = ff.saved
	case NoSpace, SyncFails:
		dev := "/dev/full"
		if m == SyncFails {
			dev = "/dev/null"
		}
		d, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("storefault: open %s: %w", dev, err)
		}
		defer unix.Close(d)
		src = d
	default:
		return fmt.Errorf("storefault: unknown mode %d", m)
	}
	if err := unix.Dup3(src, fd, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("storefault: dup3: %w", err)
	}
	if m == Healthy {
		_ = unix.Close(ff.saved)
		ff.saved = -1
	}
	ff.mode = m
	return nil
}

package memstore

import (
	"bytes"
	"slices"

	"tokend/appliance"
)

// Chunk sizes of a snapshot. An Update copies the chunk list (n/chunkSplit
// pointers) and rebuilds only the chunks its writes fall into, so a commit
// costs O(n/chunkSplit + writes·chunkMax) instead of copying every pair:
// seeding 100,000 users stays linear overall.
const (
	chunkMax   = 512 // a rebuilt chunk longer than this is split
	chunkSplit = 256 // into pieces of this length
)

// snapshot is an immutable sorted key space: non-empty sorted chunks in key
// order. Neither the list nor a chunk is modified once published; later
// snapshots share untouched chunks.
type snapshot [][]appliance.KV

func lastKey(c []appliance.KV) []byte { return c[len(c)-1].Key }

// chunkFor returns the index of the first chunk whose last key is >= key
// (len(s) if none).
func (s snapshot) chunkFor(key []byte) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(lastKey(s[m]), key) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (s snapshot) get(key []byte) ([]byte, bool) {
	ci := s.chunkFor(key)
	if ci == len(s) {
		return nil, false
	}
	c := s[ci]
	i, ok := slices.BinarySearchFunc(c, key, func(kv appliance.KV, k []byte) int { return bytes.Compare(kv.Key, k) })
	if !ok {
		return nil, false
	}
	return c[i].Value, true
}

// iter walks a snapshot in key order.
type iter struct {
	s      snapshot
	ci, ki int
}

// seek returns an iterator at the first key >= from (> from if exclusive).
func (s snapshot) seek(from []byte, exclusive bool) iter {
	ci := s.chunkFor(from)
	if ci == len(s) {
		return iter{s: s, ci: ci}
	}
	c := s[ci]
	ki := lowerBound(len(c), func(i int) int { return bytes.Compare(c[i].Key, from) }, exclusive)
	it := iter{s: s, ci: ci, ki: ki}
	if ki == len(c) {
		it.ci, it.ki = ci+1, 0
	}
	return it
}

func (it *iter) Peek() (key, value []byte, ok bool) {
	if it.ci >= len(it.s) {
		return nil, nil, false
	}
	kv := it.s[it.ci][it.ki]
	return kv.Key, kv.Value, true
}

func (it *iter) Next() {
	it.ki++
	if it.ki == len(it.s[it.ci]) {
		it.ci, it.ki = it.ci+1, 0
	}
}

// apply returns a new snapshot with the sorted writes applied.
func (s snapshot) apply(ws *appliance.WriteSet) snapshot {
	keys := ws.Keys()
	out := make(snapshot, 0, len(s)+len(keys)/chunkSplit+1)
	ci := 0
	for wi := 0; wi < len(keys); {
		// The chunk this write falls into: the first whose last key is >=
		// it, or the last chunk for keys past the end.
		target := s.chunkFor([]byte(keys[wi]))
		if target == len(s) && len(s) > 0 {
			target = len(s) - 1
		}
		out = append(out, s[ci:min(target, len(s))]...)
		// Writes up to this chunk's last key (all the rest for the last one).
		wj := wi + 1
		if target < len(s)-1 {
			last := lastKey(s[target])
			for wj < len(keys) && bytes.Compare([]byte(keys[wj]), last) <= 0 {
				wj++
			}
		} else {
			wj = len(keys)
		}
		var base []appliance.KV
		if target < len(s) {
			base = s[target]
		}
		out = appendSplit(out, mergeChunk(base, keys[wi:wj], ws))
		wi, ci = wj, target+1
	}
	if ci < len(s) {
		out = append(out, s[ci:]...)
	}
	return out
}

// mergeChunk returns a new sorted chunk: base with the writes applied.
// Stored slices are shared between snapshots; nobody modifies them.
func mergeChunk(base []appliance.KV, keys []string, ws *appliance.WriteSet) []appliance.KV {
	out := make([]appliance.KV, 0, len(base)+len(keys))
	i := 0
	for _, k := range keys {
		kb := []byte(k)
		// Copy the untouched run before kb in one go.
		j := i + lowerBound(len(base)-i, func(x int) int { return bytes.Compare(base[i+x].Key, kb) }, false)
		out = append(out, base[i:j]...)
		i = j
		if i < len(base) && bytes.Equal(base[i].Key, kb) {
			i++
		}
		if w, _ := ws.Lookup(k); !w.Delete {
			out = append(out, appliance.KV{Key: kb, Value: w.Value})
		}
	}
	return append(out, base[i:]...)
}

// appendSplit appends c to out, split if it grew too long, dropped if empty.
func appendSplit(out snapshot, c []appliance.KV) snapshot {
	if len(c) <= chunkMax {
		if len(c) > 0 {
			out = append(out, c)
		}
		return out
	}
	for len(c) > 0 {
		n := min(chunkSplit, len(c))
		out = append(out, pack(c[:n]))
		c = c[n:]
	}
	return out
}

// pack copies a chunk's keys and values into one buffer. Pairs written one
// by one lie scattered over the heap; a scan of a packed chunk reads memory
// in order, which is what makes long index walks cheap. Splits happen once
// per chunkSplit inserts into a chunk, so the copy is amortised.
func pack(c []appliance.KV) []appliance.KV {
	out := slices.Clone(c)
	appliance.PackKVs(out)
	return out
}

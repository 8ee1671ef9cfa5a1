package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
)

// The external id index is multi-valued: RFC 7643 §3.1 gives a SCIM
// externalId no uniqueness, and clients create several users with the same
// one. Entries are ui/x/<source> \0 <external id> \0 <user id> → user id.
// Stores written before this layout hold ui/x/<source> \0 <external id> →
// user id; those entries are still read, and replaced the next time their
// user is written, so no migration is needed.
//
// Sources other than SCIM (LDAP pulls, local users) keep one user per
// external id: their sync plans are keyed by it.

// extEntryKey is the index entry of one user.
func extEntryKey(source, ext, id string) []byte {
	return []byte(pfxUserExt + source + "\x00" + ext + "\x00" + id)
}

// extUsers returns the users of source whose external id is ext, in id
// order, checked against their records (an external id may itself hold a
// NUL, so a prefix alone could name another one's entry).
func extUsers(tx Tx, source, ext string) ([]*User, error) {
	var cand []string
	v, err := tx.Get(extKey(source, ext))
	switch {
	case err == nil:
		cand = append(cand, string(v))
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	kvs, err := tx.Scan(append(extKey(source, ext), 0), nil, 0)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		cand = append(cand, string(kv.Value))
	}
	slices.Sort(cand)
	out := make([]*User, 0, len(cand))
	seen := make(map[string]bool, len(cand))
	for _, id := range cand {
		if seen[id] {
			continue
		}
		seen[id] = true
		u, err := getUser(tx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if u.Source == source && u.ExternalID == ext {
			out = append(out, u)
		}
	}
	return out, nil
}

// extUnique reports whether the source keeps external ids unique: every
// source but a SCIM one.
func extUnique(tx Tx, source string) (bool, error) {
	if source == "" {
		return true, nil
	}
	r, err := getSource(tx, source)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return r.Type != SourceTypeSCIM, nil
}

// checkExtID fails with ErrExists when u's external id must be unique in
// its source and another user holds it.
func checkExtID(tx Tx, u *User) error {
	unique, err := extUnique(tx, u.Source)
	if err != nil || !unique {
		return err
	}
	holders, err := extUsers(tx, u.Source, u.ExternalID)
	if err != nil {
		return err
	}
	for _, h := range holders {
		if h.ID != u.ID {
			return fmt.Errorf("external id %q in source %q: %w", u.ExternalID, u.Source, ErrExists)
		}
	}
	return nil
}

// deleteExtEntry removes u's external id entry: the legacy single-valued
// one when it names u, else the multi-valued one (one write either way).
func deleteExtEntry(tx Tx, u *User) error {
	v, err := tx.Get(extKey(u.Source, u.ExternalID))
	switch {
	case err == nil && bytes.Equal(v, []byte(u.ID)):
		return tx.Delete(extKey(u.Source, u.ExternalID))
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	return tx.Delete(extEntryKey(u.Source, u.ExternalID, u.ID))
}

// FindSourceUsersByExternalID returns the source's users with this external
// id (case-sensitive), removed ones included, in id order; none is not an
// error.
func (s *Service) FindSourceUsersByExternalID(ctx context.Context, sourceID, externalID string) ([]SourceUser, error) {
	var out []SourceUser
	err := s.store.View(ctx, func(tx Tx) error {
		out = nil
		if externalID == "" {
			return nil
		}
		users, err := extUsers(tx, sourceID, externalID)
		if err != nil {
			return err
		}
		for _, u := range users {
			r, err := getSourceUserRecord(tx, sourceID, u.ID)
			if err != nil {
				return err
			}
			out = append(out, SourceUser{User: *u, Attributes: r.Attributes, RemovedAt: r.RemovedAt})
		}
		return nil
	})
	return out, err
}

package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Group is a group pushed by an identity source (SCIM Groups). Members are
// member references as the source sent them: ids of users or groups of the
// same source, or of ones not pushed yet (identity providers push groups
// and users in any order). ResolveGroupMembers tells which exist.
type Group struct {
	ID          string    `json:"id"`
	Source      string    `json:"source"`
	DisplayName string    `json:"display_name"`
	ExternalID  string    `json:"external_id,omitempty"`
	Members     []string  `json:"members"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// MaxGroupMembers bounds one group so its record stays well under the
// store's 1 MiB transaction limit.
const MaxGroupMembers = 10000

const pfxGroup = "g/"

// Key layout: g/<source id>/<group id> → Group.
func groupPrefix(source string) []byte { return []byte(pfxGroup + source + "/") }
func groupKey(source, id string) []byte {
	return []byte(pfxGroup + source + "/" + id)
}

func getGroup(tx Tx, source, id string) (*Group, error) {
	var g Group
	if err := getJSON(tx, groupKey(source, id), &g); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("group %q: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return &g, nil
}

// maxMemberRef bounds one member reference (ids are far shorter).
const maxMemberRef = 256

// checkGroup validates g and its member references; duplicates are
// folded. A reference need not resolve: the user or group may come later.
func checkGroup(g *Group) error {
	v := &ValidationError{}
	g.DisplayName = strings.TrimSpace(g.DisplayName)
	if g.DisplayName == "" || len(g.DisplayName) > 256 || !utf8.ValidString(g.DisplayName) || strings.ContainsRune(g.DisplayName, 0) {
		v.Add("displayName", "required, at most 256 characters")
	}
	if len(g.ExternalID) > 256 {
		v.Add("externalId", "at most 256 characters")
	}
	seen := make(map[string]bool, len(g.Members))
	members := make([]string, 0, len(g.Members))
	for _, m := range g.Members {
		if m == "" || len(m) > maxMemberRef || !utf8.ValidString(m) || strings.ContainsRune(m, 0) {
			v.Add("members", fmt.Sprintf("a member value is 1 to %d bytes of UTF-8 without NUL", maxMemberRef))
			continue
		}
		if !seen[m] {
			seen[m] = true
			members = append(members, m)
		}
	}
	g.Members = members
	if len(members) > MaxGroupMembers {
		return fmt.Errorf("group %q: more than %d members: %w", g.DisplayName, MaxGroupMembers, ErrLimit)
	}
	return v.Err()
}

// CreateGroup adds a group to a source.
func (s *Service) CreateGroup(ctx context.Context, sourceID string, in Group) (Group, error) {
	id, err := s.newID()
	if err != nil {
		return Group{}, err
	}
	var out Group
	err = s.change(ctx, AuditEvent{Action: "scim.group.create", Target: id, Detail: truncate(in.DisplayName, 128)},
		func(tx Tx, now time.Time, _ *AuditEvent) error {
			if err := requireSource(tx, sourceID); err != nil {
				return err
			}
			g := in
			g.ID, g.Source, g.CreatedAt, g.UpdatedAt = id, sourceID, now, now
			g.Members = slices.Clone(in.Members)
			if err := checkGroup(&g); err != nil {
				return err
			}
			if err := putJSON(tx, groupKey(sourceID, id), &g); err != nil {
				return err
			}
			out = g
			return nil
		})
	return out, err
}

// GetGroup returns a group of the source.
func (s *Service) GetGroup(ctx context.Context, sourceID, id string) (Group, error) {
	var out Group
	err := s.store.View(ctx, func(tx Tx) error {
		g, err := getGroup(tx, sourceID, id)
		if err != nil {
			return err
		}
		out = *g
		return nil
	})
	return out, err
}

// ListGroups returns every group of the source, in id order.
func (s *Service) ListGroups(ctx context.Context, sourceID string) ([]Group, error) {
	var out []Group
	err := s.store.View(ctx, func(tx Tx) error {
		kvs, err := tx.Scan(groupPrefix(sourceID), nil, 0)
		if err != nil {
			return err
		}
		out = make([]Group, 0, len(kvs))
		for _, kv := range kvs {
			var g Group
			if err := decodeRecord(tx, kv.Value, &g); err != nil {
				return fmt.Errorf("decode %q: %w", kv.Key, err)
			}
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

// UpdateGroup changes a group inside one transaction; fn (pure, may run more
// than once) edits the stored group. Id, source and creation time are kept.
func (s *Service) UpdateGroup(ctx context.Context, sourceID, id string, fn func(*Group) error) (Group, error) {
	var out Group
	err := s.change(ctx, AuditEvent{Action: "scim.group.update", Target: id}, func(tx Tx, now time.Time, ev *AuditEvent) error {
		old, err := getGroup(tx, sourceID, id)
		if err != nil {
			return err
		}
		g := *old
		g.Members = slices.Clone(old.Members)
		if err := fn(&g); err != nil {
			return err
		}
		g.ID, g.Source, g.CreatedAt, g.UpdatedAt = old.ID, old.Source, old.CreatedAt, now
		if err := checkGroup(&g); err != nil {
			return err
		}
		ev.Detail = fmt.Sprintf("%s members=%d", truncate(g.DisplayName, 128), len(g.Members))
		if err := putJSON(tx, groupKey(sourceID, id), &g); err != nil {
			return err
		}
		out = g
		return nil
	})
	return out, err
}

// DeleteGroup removes a group (its members are not touched).
func (s *Service) DeleteGroup(ctx context.Context, sourceID, id string) error {
	return s.DeleteGroupIf(ctx, sourceID, id, nil)
}

// DeleteGroupIf is DeleteGroup that first calls check (when not nil) with
// the stored group inside the same transaction and deletes nothing if it
// fails (SCIM If-Match). check must be pure; it may run more than once.
func (s *Service) DeleteGroupIf(ctx context.Context, sourceID, id string, check func(Group) error) error {
	return s.change(ctx, AuditEvent{Action: "scim.group.delete", Target: id}, func(tx Tx, _ time.Time, _ *AuditEvent) error {
		g, err := getGroup(tx, sourceID, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(*g); err != nil {
				return err
			}
		}
		return tx.Delete(groupKey(sourceID, id))
	})
}

// dropGroupMembers removes purged users from the source's groups, a few
// groups per transaction.
func (s *Service) dropGroupMembers(ctx context.Context, sourceID string, userIDs []string) error {
	gone := make(map[string]bool, len(userIDs))
	for _, id := range userIDs {
		gone[id] = true
	}
	groups, err := s.ListGroups(ctx, sourceID)
	if err != nil {
		return err
	}
	var touched []string
	for _, g := range groups {
		if slices.ContainsFunc(g.Members, func(m string) bool { return gone[m] }) {
			touched = append(touched, g.ID)
		}
	}
	const chunk = 45 // two writes per group: record and nothing else, plus room
	for len(touched) > 0 {
		n := min(chunk, len(touched))
		part := touched[:n]
		now := s.now().UTC()
		err := s.store.Update(ctx, func(tx Tx) error {
			for _, id := range part {
				g, err := getGroup(tx, sourceID, id)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return gone[m] })
				g.UpdatedAt = now
				if err := putJSON(tx, groupKey(sourceID, id), g); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		touched = touched[n:]
	}
	return nil
}

// Member kinds ResolveGroupMembers answers.
const (
	MemberUser  = "User"
	MemberGroup = "Group"
)

// ResolveGroupMembers tells, in one read, which member references of the
// source's groups name something that exists now: a user of the source
// that the source has not deleted (MemberUser) or a group of the source
// (MemberGroup). References that resolve to nothing are left out.
func (s *Service) ResolveGroupMembers(ctx context.Context, sourceID string, refs []string) (map[string]string, error) {
	var out map[string]string
	err := s.store.View(ctx, func(tx Tx) error {
		out = make(map[string]string, len(refs))
		for _, ref := range refs {
			if _, done := out[ref]; done || ref == "" {
				continue
			}
			u, r, err := getSourceUser(tx, sourceID, ref)
			switch {
			case err == nil:
				if r.RemovedAt.IsZero() && u.ID == ref {
					out[ref] = MemberUser
				}
				continue
			case !errors.Is(err, ErrNotFound):
				return err
			}
			ok, err := exists(tx, groupKey(sourceID, ref))
			if err != nil {
				return err
			}
			if ok {
				out[ref] = MemberGroup
			}
		}
		return nil
	})
	return out, err
}

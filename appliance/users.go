package appliance

import (
	"bytes"
	"context"
	"net/mail"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// NewUser is the input for creating a user.
type NewUser struct {
	UserName    string
	DisplayName string
	Email       string
	Source      string // SourceInternal when empty
	ExternalID  string
	Active      *bool // true when nil
}

// validateUserFields checks a user's fields; userName must already be in
// NormalizeName form.
func validateUserFields(userName, displayName, email string) *ValidationError {
	v := &ValidationError{}
	switch {
	case strings.TrimSpace(userName) == "":
		v.Add("user_name", "required")
	case !ValidUserName(userName):
		v.Add("user_name", UserNameRule)
	}
	if len(displayName) > 256 || !utf8.ValidString(displayName) || strings.ContainsRune(displayName, 0) {
		v.Add("display_name", "must be at most 256 characters")
	}
	if email != "" {
		if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 256 {
			v.Add("email", "not a valid e-mail address")
		}
	}
	return v
}

// CreateUser adds a user. User names are unique case-insensitively.
func (s *Service) CreateUser(ctx context.Context, in NewUser) (UserView, error) {
	in.UserName = NormalizeName(in.UserName)
	if err := validateUserFields(in.UserName, in.DisplayName, in.Email).Err(); err != nil {
		return UserView{}, err
	}
	if in.Source == "" {
		in.Source = SourceInternal
	}
	id, err := s.newID()
	if err != nil {
		return UserView{}, err
	}
	active := in.Active == nil || *in.Active
	var out User
	err = s.change(ctx, AuditEvent{Action: "user.create", UserID: id, Target: in.UserName}, func(tx Tx, now time.Time, _ *AuditEvent) error {
		u := User{ID: id, UserName: in.UserName, DisplayName: in.DisplayName, Email: in.Email, Source: in.Source,
			ExternalID: in.ExternalID, Active: active, CreatedAt: now, UpdatedAt: now}
		if !active {
			u.DeactivatedAt = now
		}
		if err := putUser(tx, &u, nil); err != nil {
			return err
		}
		out = u
		return nil
	})
	if err != nil {
		return UserView{}, err
	}
	return UserView{User: out, Tokens: []Token{}}, nil
}

// GetUser returns a user with their assigned tokens.
func (s *Service) GetUser(ctx context.Context, id string) (UserView, error) {
	var out UserView
	err := s.store.View(ctx, func(tx Tx) error {
		u, err := getUser(tx, id)
		if err != nil {
			return err
		}
		toks, err := userTokens(tx, id)
		if err != nil {
			return err
		}
		out = UserView{User: *u, Tokens: toks}
		return markAdminFactors(tx, toks)
	})
	return out, err
}

// FindUserByName returns the user whose login matches case-insensitively.
func (s *Service) FindUserByName(ctx context.Context, userName string) (User, error) {
	var out User
	err := s.store.View(ctx, func(tx Tx) error {
		v, err := tx.Get(loginKey(userName))
		if err != nil {
			return err
		}
		u, err := getUser(tx, parseLoginIndex(v).ID)
		if err != nil {
			return err
		}
		out = *u
		return nil
	})
	return out, err
}

// ListUsers pages through users ordered by login. A search matches a
// case-insensitive prefix of the login, the display name or the e-mail.
// Total counts every match, not just the page.
//
// Without a search the total comes from the user counters and the page from
// `limit` login index entries after the cursor. With one, the three index
// ranges are streamed once: each match is counted by the first field it
// matches (login, then e-mail, then display name, decided from the index
// values alone), so nothing is collected into a set, and only the `limit`
// smallest logins after the cursor are kept.
func (s *Service) ListUsers(ctx context.Context, q UserQuery) (UserPage, error) {
	limit := clampLimit(q.Limit)
	search := fold(q.Search)
	var page UserPage
	err := s.store.View(ctx, func(tx Tx) error {
		page = UserPage{Items: []User{}}
		var (
			top userTop
			err error
		)
		top.limit = limit + 1
		if search == "" {
			if page.Total, err = userTotal(tx, q.Source); err != nil {
				return err
			}
			err = walkLogins(tx, q.Source, q.Cursor, &top)
		} else {
			page.Total, err = searchUsers(tx, search, q.Source, q.Cursor, &top)
		}
		if err != nil {
			return err
		}
		hits := top.hits
		if len(hits) > limit {
			hits = hits[:limit]
			page.NextCursor = hits[limit-1].login
		}
		for _, h := range hits {
			u, err := getUser(tx, h.id)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, *u)
		}
		return nil
	})
	return page, err
}

// userTotal counts users (of one source, or all) from the counters.
func userTotal(tx Tx, source string) (int, error) {
	m, err := readCounts(tx, keyUserCounts)
	if err != nil {
		return 0, err
	}
	n := int64(0)
	for f, c := range m {
		if src, _, _ := strings.Cut(f, "\x00"); source == "" || src == source {
			n += c
		}
	}
	return int(n), nil
}

type userHit struct{ login, id string }

// userTop keeps the `limit` smallest logins offered, in order.
type userTop struct {
	limit int
	hits  []userHit
}

func (t *userTop) full() bool { return len(t.hits) >= t.limit }

func (t *userTop) offer(login, id string) {
	if t.full() && login >= t.hits[len(t.hits)-1].login {
		return
	}
	i := sort.Search(len(t.hits), func(i int) bool { return t.hits[i].login >= login })
	if t.full() {
		t.hits = t.hits[:len(t.hits)-1]
	}
	t.hits = slices.Insert(t.hits, i, userHit{login, id})
}

// scanBatch bounds the memory of a long index walk.
const scanBatch = 2000

// walkRange calls fn for every pair under prefix after `after`, in batches;
// fn returns false to stop.
func walkRange(tx Tx, prefix, after []byte, fn func(KV) bool) error {
	for {
		kvs, err := tx.Scan(prefix, after, scanBatch)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if !fn(kv) {
				return nil
			}
		}
		if len(kvs) < scanBatch {
			return nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// field returns the i-th NUL-separated field of v (nil if absent).
func field(v []byte, i int) []byte {
	for ; i > 0; i-- {
		j := bytes.IndexByte(v, 0)
		if j < 0 {
			return nil
		}
		v = v[j+1:]
	}
	if j := bytes.IndexByte(v, 0); j >= 0 {
		return v[:j]
	}
	return v
}

// walkLogins offers the logins after the cursor (of one source) until the
// page is full.
func walkLogins(tx Tx, source, cursor string, top *userTop) error {
	var after []byte
	if cursor != "" {
		after = []byte(pfxUserLogin + cursor)
	}
	return walkRange(tx, []byte(pfxUserLogin), after, func(kv KV) bool {
		if source != "" && string(field(kv.Value, 1)) != source {
			return true
		}
		top.offer(string(kv.Key[len(pfxUserLogin):]), string(field(kv.Value, 0)))
		return !top.full()
	})
}

// searchUsers counts the users matching search (of one source) and offers
// the logins after the cursor.
func searchUsers(tx Tx, search, source, cursor string, top *userTop) (int, error) {
	total := 0
	bsearch, bsource := []byte(search), []byte(source)
	// Logins: the range is in login order, so once the page is full the
	// rest is only counted.
	err := walkRange(tx, []byte(pfxUserLogin+search), nil, func(kv KV) bool {
		if source != "" && !bytes.Equal(field(kv.Value, 1), bsource) {
			return true
		}
		total++
		if login := kv.Key[len(pfxUserLogin):]; !top.full() && string(login) > cursor {
			top.offer(string(login), string(field(kv.Value, 0)))
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	// E-mails, then display names: a user is counted here only if no
	// earlier field matched.
	for _, pfx := range []string{pfxUserEmail, pfxUserDisplay} {
		var ferr error
		err := walkRange(tx, []byte(pfx+search), nil, func(kv KV) bool {
			v := kv.Value
			if source != "" && !bytes.Equal(field(v, 1), bsource) {
				return true
			}
			login := field(v, 2)
			if bytes.HasPrefix(login, bsearch) {
				return true
			}
			if pfx == pfxUserDisplay {
				email := field(v, 3)
				if bytes.Count(v, []byte{0}) < 3 {
					// An entry written before the display index carried
					// the e-mail: read it from the record.
					u, err := getUser(tx, string(field(v, 0)))
					if err != nil {
						ferr = err
						return false
					}
					email = []byte(fold(u.Email))
				}
				if len(email) > 0 && bytes.HasPrefix(email, bsearch) {
					return true
				}
			}
			total++
			if string(login) > cursor {
				top.offer(string(login), string(field(v, 0)))
			}
			return true
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return 0, err
		}
	}
	return total, nil
}

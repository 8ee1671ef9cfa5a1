package appliance

import (
	"context"
	"net/mail"
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

func validateUserFields(userName, displayName, email string) *ValidationError {
	v := &ValidationError{}
	switch {
	case strings.TrimSpace(userName) == "":
		v.Add("user_name", "required")
	case len(userName) > 256 || !utf8.ValidString(userName) || strings.ContainsAny(userName, "\x00\r\n\t/"):
		v.Add("user_name", "must be at most 256 printable characters without '/'")
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
	in.UserName = strings.TrimSpace(in.UserName)
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
		return nil
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

type userHit struct{ id, source string }

// ListUsers pages through users ordered by login. A search matches a
// case-insensitive prefix of the login, the display name or the e-mail.
// Total counts every match, not just the page.
func (s *Service) ListUsers(ctx context.Context, q UserQuery) (UserPage, error) {
	limit := clampLimit(q.Limit)
	search := fold(q.Search)
	var page UserPage
	err := s.store.View(ctx, func(tx Tx) error {
		page = UserPage{Items: []User{}}
		hits := map[string]userHit{} // login → hit
		kvs, err := tx.Scan([]byte(pfxUserLogin+search), nil, 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			ix := parseLoginIndex(kv.Value)
			if q.Source != "" && ix.Source != q.Source {
				continue
			}
			hits[string(kv.Key[len(pfxUserLogin):])] = userHit{ix.ID, ix.Source}
		}
		if search != "" {
			for _, pfx := range []string{pfxUserEmail, pfxUserDisplay} {
				kvs, err := tx.Scan([]byte(pfx+search), nil, 0)
				if err != nil {
					return err
				}
				for _, kv := range kvs {
					parts := strings.SplitN(string(kv.Value), "\x00", 3)
					if len(parts) != 3 || (q.Source != "" && parts[1] != q.Source) {
						continue
					}
					hits[parts[2]] = userHit{parts[0], parts[1]}
				}
			}
		}
		page.Total = len(hits)
		logins := make([]string, 0, len(hits))
		for l := range hits {
			if q.Cursor == "" || l > q.Cursor {
				logins = append(logins, l)
			}
		}
		sort.Strings(logins)
		if len(logins) > limit {
			logins = logins[:limit]
			page.NextCursor = logins[limit-1]
		}
		for _, l := range logins {
			u, err := getUser(tx, hits[l].id)
			if err != nil {
				return err
			}
			page.Items = append(page.Items, *u)
		}
		return nil
	})
	return page, err
}

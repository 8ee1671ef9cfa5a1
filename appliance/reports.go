package appliance

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// Reports an administrator runs over the inventory. Each walks one key
// range in order, page by page (ReportQuery.Cursor), reading at most
// reportScanBudget keys per page, so memory stays bounded whatever the size
// of the store and a CSV export can stream page after page.
const (
	ReportExpiringTokens      = "expiring-tokens"
	ReportUnusedCodes         = "unused-activation-codes"
	ReportUsersWithoutToken   = "users-without-token"
	ReportUsersAtLimit        = "users-at-limit"
	ReportInactiveUsersTokens = "inactive-user-tokens"
	ReportLostTokens          = "lost-tokens"
)

// ReportNames lists every report, in the order the console shows them.
var ReportNames = []string{ReportExpiringTokens, ReportUnusedCodes, ReportUsersWithoutToken, ReportUsersAtLimit,
	ReportInactiveUsersTokens, ReportLostTokens}

// reportDays is the default of the reports that take a number of days.
var reportDays = map[string]int{ReportExpiringTokens: 30, ReportUnusedCodes: 7}

// ReportTakesDays reports whether a report has a days parameter.
func ReportTakesDays(name string) bool { _, ok := reportDays[name]; return ok }

// reportScanBudget bounds the keys one page reads: a report that matches
// little returns a short page with a cursor rather than walk everything.
const reportScanBudget = 20_000

// ReportQuery selects one page of a report. Days is the report's horizon
// (expiring-tokens: expiring within Days; unused-activation-codes: issued
// at least Days ago); zero takes the default.
type ReportQuery struct {
	Name   string
	Days   int
	Limit  int
	Cursor string
}

// ReportRow is one line of a report. At is the report's date: the expiry,
// the code's issue, the user's creation or deactivation, the loss.
type ReportRow struct {
	Serial   string
	UserID   string
	UserName string
	Kind     string
	At       time.Time
	Detail   string
}

// ReportPage is one page of a report; an empty NextCursor means the end.
type ReportPage struct {
	Name       string
	Days       int
	Items      []ReportRow
	NextCursor string
}

// Report returns one page of a report.
func (s *Service) Report(ctx context.Context, q ReportQuery) (ReportPage, error) {
	v := &ValidationError{}
	known := false
	for _, n := range ReportNames {
		known = known || n == q.Name
	}
	if !known {
		return ReportPage{}, fmt.Errorf("report %q: %w", q.Name, ErrNotFound)
	}
	if def, ok := reportDays[q.Name]; ok {
		if q.Days == 0 {
			q.Days = def
		}
		if q.Days < 1 || q.Days > 3650 {
			v.Add("days", "must be 1 to 3650")
		}
	} else if q.Days != 0 {
		v.Add("days", "this report takes no days")
	}
	cursor, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	if err != nil {
		v.Add("cursor", "not a cursor of this report")
	}
	if err := v.Err(); err != nil {
		return ReportPage{}, err
	}
	limit := clampLimit(q.Limit)
	now := s.now().UTC()
	page := ReportPage{Name: q.Name, Days: q.Days}
	err = s.store.View(ctx, func(tx Tx) error {
		page.Items, page.NextCursor = []ReportRow{}, ""
		r := reporter{tx: tx, now: now, days: q.Days, users: map[string]*User{}}
		prefix, row := r.plan(q.Name)
		next, err := walkReport(tx, prefix, cursor, func(kv KV) error {
			rr, ok, err := row(kv)
			if ok {
				page.Items = append(page.Items, rr)
			}
			return err
		}, func() bool { return len(page.Items) >= limit })
		if next != nil {
			page.NextCursor = base64.RawURLEncoding.EncodeToString(next)
		}
		return err
	})
	return page, err
}

// walkReport calls fn for the keys under prefix after cursor (a key
// suffix) until full says the page is full, the scan budget is spent or
// the range ends. It returns the suffix to continue after (nil: the end).
func walkReport(tx Tx, prefix string, cursor []byte, fn func(KV) error, full func() bool) ([]byte, error) {
	var after []byte
	if len(cursor) > 0 {
		after = append([]byte(prefix), cursor...)
	}
	read := 0
	for {
		kvs, err := tx.Scan([]byte(prefix), after, 256)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			if err := fn(kv); err != nil {
				return nil, err
			}
			read++
			if full() || read >= reportScanBudget {
				return kv.Key[len(prefix):], nil
			}
		}
		if len(kvs) < 256 {
			return nil, nil
		}
		after = kvs[len(kvs)-1].Key
	}
}

// reporter holds what one page's rows share: the transaction, the time,
// and the users already read (a page names each at most a few times).
type reporter struct {
	tx    Tx
	now   time.Time
	days  int
	users map[string]*User
}

func (r *reporter) user(id string) (*User, error) {
	if u, ok := r.users[id]; ok {
		return u, nil
	}
	u, err := getUser(r.tx, id)
	if err != nil {
		return nil, err
	}
	if len(r.users) > 1024 {
		clear(r.users)
	}
	r.users[id] = u
	return u, nil
}

// tokenRow is a row about a token and, if assigned, its user.
func (r *reporter) tokenRow(t *Token, at time.Time, detail string) (ReportRow, error) {
	row := ReportRow{Serial: t.Serial, UserID: t.UserID, Kind: t.Kind, At: at, Detail: detail}
	if t.UserID != "" {
		u, err := r.user(t.UserID)
		if err != nil {
			return row, err
		}
		row.UserName = u.UserName
	}
	return row, nil
}

// plan returns the key range a report walks and the row each key gives.
func (r *reporter) plan(name string) (string, func(KV) (ReportRow, bool, error)) {
	horizon := time.Duration(r.days) * 24 * time.Hour
	switch name {
	case ReportExpiringTokens:
		// Tokens that are still valid and expire within the horizon.
		return pfxToken, func(kv KV) (ReportRow, bool, error) {
			var t Token
			if err := decodeRecord(r.tx, kv.Value, &t); err != nil {
				return ReportRow{}, false, err
			}
			if t.ExpiresAt.IsZero() || !t.ExpiresAt.After(r.now) || t.ExpiresAt.After(r.now.Add(horizon)) {
				return ReportRow{}, false, nil
			}
			row, err := r.tokenRow(&t, t.ExpiresAt, t.State)
			return row, err == nil, err
		}
	case ReportUnusedCodes:
		// Codes still waiting for their device after the horizon.
		return pfxCode, func(kv KV) (ReportRow, bool, error) {
			var c issuedCode
			if err := decodeRecord(r.tx, kv.Value, &c); err != nil {
				return ReportRow{}, false, err
			}
			if (c.State != CodeIssued && c.State != CodeInUse) || c.IssuedAt.After(r.now.Add(-horizon)) {
				return ReportRow{}, false, nil
			}
			detail := "expires " + c.ExpiresAt.UTC().Format(time.RFC3339)
			if !r.now.Before(c.ExpiresAt) {
				detail = "expired " + c.ExpiresAt.UTC().Format(time.RFC3339)
			}
			row := ReportRow{Serial: c.Serial, UserID: c.UserID, Kind: KindSoftware, At: c.IssuedAt, Detail: detail}
			if c.UserID != "" {
				if u, err := r.user(c.UserID); err == nil {
					row.UserName = u.UserName
				}
			}
			return row, true, nil
		}
	case ReportUsersWithoutToken, ReportUsersAtLimit:
		atLimit := name == ReportUsersAtLimit
		return pfxUserLogin, func(kv KV) (ReportRow, bool, error) {
			li := parseLoginIndex(kv.Value)
			if !li.Active {
				return ReportRow{}, false, nil
			}
			var held []Token
			if atLimit {
				var err error
				if held, err = userTokens(r.tx, li.ID); err != nil {
					return ReportRow{}, false, err
				}
				if limitCount(held) < MaxTokensPerUser {
					return ReportRow{}, false, nil
				}
			} else {
				kvs, err := r.tx.Scan([]byte(pfxTokenUser+li.ID+"/"), nil, 1)
				if err != nil || len(kvs) > 0 {
					return ReportRow{}, false, err
				}
			}
			u, err := r.user(li.ID)
			if err != nil {
				return ReportRow{}, false, err
			}
			row := ReportRow{UserID: u.ID, UserName: u.UserName, At: u.CreatedAt, Detail: u.Source}
			if atLimit {
				row.Detail = strconv.Itoa(limitCount(held)) + " tokens"
			}
			return row, true, nil
		}
	case ReportInactiveUsersTokens:
		// Tokens still assigned to users the directory deleted or
		// disabled: candidates for unassignment.
		return pfxTokenState, func(kv KV) (ReportRow, bool, error) {
			ti := parseTokenState(kv)
			if ti.UserID == "" {
				return ReportRow{}, false, nil
			}
			u, err := r.user(ti.UserID)
			if err != nil || u.Active {
				return ReportRow{}, false, err
			}
			detail := "deleted"
			if u.DirectoryDisabled {
				detail = "disabled"
			}
			return ReportRow{Serial: ti.Serial, UserID: u.ID, UserName: u.UserName, Kind: ti.Kind, At: u.DeactivatedAt,
				Detail: detail}, true, nil
		}
	}
	// ReportLostTokens: a lost token is disabled, so only disabled
	// tokens are read.
	return pfxTokenState, func(kv KV) (ReportRow, bool, error) {
		ti := parseTokenState(kv)
		if ti.State != StateDisabled {
			return ReportRow{}, false, nil
		}
		t, err := getToken(r.tx, ti.Serial)
		if err != nil || !t.Lost {
			return ReportRow{}, false, err
		}
		row, err := r.tokenRow(t, t.LostAt, "lost")
		return row, err == nil, err
	}
}

package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	goldap "github.com/go-ldap/ldap/v3"

	"tokend/appliance"
	"tokend/sync/mirror"
)

// asyncBuffer is how many decoded results go-ldap may queue ahead of us:
// enough to keep the socket busy, small enough to bound memory.
const asyncBuffer = 64

// BindError is a failed bind; the message names the DN and the reason,
// never the password.
type BindError struct {
	DN  string
	Err error
}

func (e *BindError) Error() string {
	reason := e.Err.Error()
	var le *goldap.Error
	if errors.As(e.Err, &le) && le.ResultCode != 0 {
		reason = strings.ToLower(goldap.LDAPResultCodeMap[le.ResultCode])
	}
	return fmt.Sprintf("ldap: bind as %q failed: %s", e.DN, reason)
}

func (e *BindError) Unwrap() error { return e.Err }

// ReadError is a failure while reading the directory; nothing was applied.
type ReadError struct {
	Op      string // "search", "syncrepl"
	BaseDN  string
	Entries int // entries received before the failure
	Err     error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("ldap: %s of %q failed after %d entries (nothing applied): %v", e.Op, e.BaseDN, e.Entries, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// ErrIncomplete means a search ended without its final message (the
// connection went away, or the server ignored the paging control).
var ErrIncomplete = errors.New("the search ended without a final result (connection lost, or the server ignored the paging control)")

// errNeedFull means the incremental read cannot be trusted (present phase,
// refused cookie, no syncrepl): do a full pass instead.
var errNeedFull = errors.New("ldap: incremental read needs a full pass")

func tlsConfig(c Config) (*tls.Config, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("ldap: url: %w", err)
	}
	tc := &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	var certs []*x509.Certificate
	switch {
	case c.CAPEM != "":
		if certs, err = appliance.ParseCAPEM([]byte(c.CAPEM)); err != nil {
			return nil, fmt.Errorf("ldap: ca_pem %w", err)
		}
	case c.CAFile != "":
		// Read inside CredentialsDir only, at every connect: the check
		// made when the source was saved may be stale (a swapped symlink,
		// a source stored before the directory rule).
		if certs, err = appliance.LoadCAFile(c.CredentialsDir, c.CAFile); err != nil {
			return nil, fmt.Errorf("ldap: ca_file: %w", err)
		}
	}
	if certs != nil {
		pool := x509.NewCertPool()
		for _, cert := range certs {
			pool.AddCert(cert)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// connect dials, upgrades with StartTLS when asked, and binds. The CA and
// the password are loaded before dialling, so a source whose files are not
// usable never reaches its server.
func connect(c Config) (*goldap.Conn, error) {
	tc, err := tlsConfig(c)
	if err != nil {
		return nil, err
	}
	var pw string
	if c.BindDN != "" {
		if pw, err = c.password(); err != nil {
			return nil, err
		}
	}
	conn, err := goldap.DialURL(c.URL, goldap.DialWithDialer(&net.Dialer{Timeout: c.Timeout}), goldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, fmt.Errorf("ldap: connecting to %s: %w", c.URL, err)
	}
	conn.SetTimeout(c.Timeout)
	if c.StartTLS {
		if err := conn.StartTLS(tc); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ldap: StartTLS with %s: %w", c.URL, err)
		}
	}
	if c.BindDN == "" {
		return conn, nil
	}
	if err := conn.Bind(c.BindDN, pw); err != nil {
		conn.Close()
		return nil, &BindError{DN: c.BindDN, Err: err}
	}
	return conn, nil
}

// converter turns directory entries into compact mirror entries.
type converter struct {
	m     Mapping
	attrs []string
	lower bool // entryUUID: lower-case so it matches syncrepl's UUIDs
}

func newConverter(m Mapping) converter {
	attrs := []string{m.ID, m.UserName}
	attrs = append(attrs, m.DisplayName...)
	attrs = append(attrs, m.Email...)
	if m.Disabled != "" {
		attrs = append(attrs, m.Disabled)
	}
	return converter{m: m, attrs: attrs, lower: strings.EqualFold(m.ID, "entryUUID")}
}

// convert returns the entry or why it cannot be used. Strings are cloned so
// the go-ldap entry (and its packet) can be collected at once.
func (c converter) convert(e *goldap.Entry) (mirror.Entry, error) {
	var out mirror.Entry
	switch c.m.IDFormat {
	case IDGUID:
		raw := e.GetEqualFoldRawAttributeValue(c.m.ID)
		if len(raw) != 16 {
			return out, fmt.Errorf("%s is %d bytes, want 16", c.m.ID, len(raw))
		}
		out.ExternalID = formatGUID(raw)
	default:
		out.ExternalID = strings.Clone(e.GetEqualFoldAttributeValue(c.m.ID))
		if c.lower {
			out.ExternalID = strings.ToLower(out.ExternalID)
		}
	}
	if out.ExternalID == "" {
		return out, fmt.Errorf("no %s", c.m.ID)
	}
	out.UserName = strings.Clone(e.GetEqualFoldAttributeValue(c.m.UserName))
	if out.UserName == "" {
		return out, fmt.Errorf("no %s", c.m.UserName)
	}
	out.DisplayName = firstOf(e, c.m.DisplayName)
	out.Email = firstOf(e, c.m.Email)
	if c.m.Disabled != "" {
		v := e.GetEqualFoldAttributeValue(c.m.Disabled)
		switch {
		case c.m.DisabledMask == 0:
			out.Disabled = v != ""
		case v != "":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return out, fmt.Errorf("%s %q is not an integer", c.m.Disabled, v)
			}
			out.Disabled = uint64(n)&uint64(c.m.DisabledMask) != 0
		}
	}
	return out, nil
}

func firstOf(e *goldap.Entry, attrs []string) string {
	for _, a := range attrs {
		if v := e.GetEqualFoldAttributeValue(a); v != "" {
			return strings.Clone(v)
		}
	}
	return ""
}

// formatGUID renders AD's objectGUID bytes in the canonical text form: the
// first three groups are little-endian on the wire.
func formatGUID(b []byte) string {
	o := []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]}
	o = append(o, b[8:16]...)
	h := hex.EncodeToString(o)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// skipFunc reports an unusable entry (DN, reason).
type skipFunc func(dn string, err error)

// readAll streams a paged search of the whole user set. It returns only
// when the last page is in: any failure is a *ReadError.
func readAll(ctx context.Context, conn *goldap.Conn, c Config, conv converter, skip skipFunc, progress func(int)) ([]mirror.Entry, error) {
	paging := goldap.NewControlPaging(uint32(c.PageSize))
	var out []mirror.Entry
	received := 0
	fail := func(err error) ([]mirror.Entry, error) {
		return nil, &ReadError{Op: "search", BaseDN: c.BaseDN, Entries: received, Err: err}
	}
	for {
		// A fresh request per page: go-ldap appends controls to requests.
		req := goldap.NewSearchRequest(c.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
			0, 0, false, c.UserFilter, conv.attrs, []goldap.Control{paging})
		r := conn.SearchAsync(ctx, req, asyncBuffer)
		var cookie []byte
		done := false
		for r.Next() {
			if e := r.Entry(); e != nil {
				received++
				if progress != nil {
					progress(received)
				}
				me, err := conv.convert(e)
				if err != nil {
					skip(e.DN, err)
					continue
				}
				out = append(out, me)
				continue
			}
			if pc, ok := goldap.FindControl(r.Controls(), goldap.ControlTypePaging).(*goldap.ControlPaging); ok {
				cookie, done = pc.Cookie, true
			}
		}
		if err := r.Err(); err != nil {
			return fail(err)
		}
		// go-ldap ends a cancelled search without an error.
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		// go-ldap also ends a search without an error when the connection
		// was already closing, and it drops a SearchResultDone that has no
		// controls: both look like a short, complete result. RFC 2696 makes
		// the server return the paging control with every page, so its
		// absence means the page did not end properly.
		if !done {
			return fail(ErrIncomplete)
		}
		if len(cookie) == 0 {
			return out, nil
		}
		paging.SetCookie(cookie)
	}
}

// readChanges runs a syncrepl refreshOnly with the stored cookie and
// collects the last state per entryUUID. It returns errNeedFull when the
// server cannot give a delta (present phase, refused cookie, no syncprov).
func readChanges(ctx context.Context, conn *goldap.Conn, c Config, conv converter, cookie []byte, skip skipFunc) (mirror.Changes, []byte, error) {
	req := goldap.NewSearchRequest(c.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
		0, 0, false, c.UserFilter, conv.attrs, nil)
	r := conn.Syncrepl(ctx, req, asyncBuffer, goldap.SyncRequestModeRefreshOnly, cookie, false)
	upserts := map[string]mirror.Entry{}
	deletes := map[string]struct{}{}
	var newCookie []byte
	received := 0
	needFull, done := false, false
	for r.Next() {
		ctrls := r.Controls()
		if e := r.Entry(); e != nil {
			received++
			st, ok := goldap.FindControl(ctrls, goldap.ControlTypeSyncState).(*goldap.ControlSyncState)
			if !ok {
				return mirror.Changes{}, nil, &ReadError{Op: "syncrepl", BaseDN: c.BaseDN, Entries: received,
					Err: fmt.Errorf("entry %q without a sync state control", e.DN)}
			}
			if st.Cookie != nil {
				newCookie = st.Cookie
			}
			id := st.EntryUUID.String()
			switch st.State {
			case goldap.SyncStateAdd, goldap.SyncStateModify:
				me, err := conv.convert(e)
				if err != nil {
					skip(e.DN, err)
					continue
				}
				delete(deletes, me.ExternalID)
				upserts[me.ExternalID] = me
			case goldap.SyncStateDelete:
				delete(upserts, id)
				deletes[id] = struct{}{}
			default: // present: the server is enumerating, not sending a delta
				needFull = true
			}
			continue
		}
		for _, ctl := range ctrls {
			switch ctl := ctl.(type) {
			case *goldap.ControlSyncInfo:
				switch ctl.Value {
				case goldap.SyncInfoNewcookie:
					newCookie = ctl.NewCookie.Cookie
				case goldap.SyncInfoRefreshDelete:
					if ctl.RefreshDelete.Cookie != nil {
						newCookie = ctl.RefreshDelete.Cookie
					}
				case goldap.SyncInfoRefreshPresent:
					needFull = true
				case goldap.SyncInfoSyncIdSet:
					if ctl.SyncIdSet.Cookie != nil {
						newCookie = ctl.SyncIdSet.Cookie
					}
					if !ctl.SyncIdSet.RefreshDeletes {
						needFull = true // a list of present UUIDs, not of deleted ones
						continue
					}
					for _, u := range ctl.SyncIdSet.SyncUUIDs {
						id := u.String()
						delete(upserts, id)
						deletes[id] = struct{}{}
					}
				}
			case *goldap.ControlSyncDone:
				done = true
				if ctl.Cookie != nil {
					newCookie = ctl.Cookie
				}
				if !ctl.RefreshDeletes {
					needFull = true // present phase: "everything not listed is gone"
				}
			}
		}
	}
	if err := r.Err(); err != nil {
		if goldap.IsErrorWithCode(err, goldap.LDAPResultSyncRefreshRequired) ||
			goldap.IsErrorWithCode(err, goldap.LDAPResultUnavailableCriticalExtension) {
			return mirror.Changes{}, nil, fmt.Errorf("%w: %v", errNeedFull, err)
		}
		return mirror.Changes{}, nil, &ReadError{Op: "syncrepl", BaseDN: c.BaseDN, Entries: received, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return mirror.Changes{}, nil, &ReadError{Op: "syncrepl", BaseDN: c.BaseDN, Entries: received, Err: err}
	}
	if !done { // see readAll: a cut stream can end without an error
		return mirror.Changes{}, nil, &ReadError{Op: "syncrepl", BaseDN: c.BaseDN, Entries: received, Err: ErrIncomplete}
	}
	if needFull {
		return mirror.Changes{}, nil, fmt.Errorf("%w: server sent a present phase", errNeedFull)
	}
	ch := mirror.Changes{Upserts: make([]mirror.Entry, 0, len(upserts)), Deletes: make([]string, 0, len(deletes))}
	for _, e := range upserts {
		ch.Upserts = append(ch.Upserts, e)
	}
	for id := range deletes {
		ch.Deletes = append(ch.Deletes, id)
	}
	return ch, newCookie, nil
}

// currentCookie asks syncprov for a cookie naming the present state, with
// a refreshOnly search of the base entry alone (one entry, not the whole
// set). Taken before a full read, it makes the next incremental run
// re-deliver anything that changed during the read: changes are idempotent.
// slapd's cookie is a CSN and does not depend on the search (verified).
func currentCookie(ctx context.Context, conn *goldap.Conn, c Config) ([]byte, error) {
	req := goldap.NewSearchRequest(c.BaseDN, goldap.ScopeBaseObject, goldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"1.1"}, nil)
	r := conn.Syncrepl(ctx, req, asyncBuffer, goldap.SyncRequestModeRefreshOnly, nil, false)
	var cookie []byte
	for r.Next() {
		for _, ctl := range r.Controls() {
			switch ctl := ctl.(type) {
			case *goldap.ControlSyncDone:
				if ctl.Cookie != nil {
					cookie = ctl.Cookie
				}
			case *goldap.ControlSyncState:
				if ctl.Cookie != nil {
					cookie = ctl.Cookie
				}
			case *goldap.ControlSyncInfo:
				if ctl.Value == goldap.SyncInfoNewcookie {
					cookie = ctl.NewCookie.Cookie
				}
			}
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return cookie, nil
}

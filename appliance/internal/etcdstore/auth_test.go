package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"tokend/internal/etcdtest"
)

// TestOpenRefusesHalfCredentials: the etcd client quietly connects without
// authentication when only one of username and password is set; Open
// refuses that instead, against a real member that would have accepted
// the unauthenticated connection.
func TestOpenRefusesHalfCredentials(t *testing.T) {
	c := etcdtest.Start(t)
	rows := []struct {
		name string
		opts Options
	}{
		{name: "username alone", opts: Options{Username: "tokend"}},
		{name: "password alone", opts: Options{Password: "pw-only"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			r.opts.Endpoints = c.Endpoints()
			r.opts.PurgeInterval = -1
			st, err := Open(context.Background(), r.opts)
			if err == nil {
				st.Close()
				t.Fatal("Open accepted half the credentials")
			}
			if !errors.Is(err, ErrCredentials) {
				t.Errorf("Open = %v; want ErrCredentials", err)
			}
			if strings.Contains(err.Error(), "pw-only") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// TestOptionsHidePassword: Options printed or logged do not show the
// password.
func TestOptionsHidePassword(t *testing.T) {
	const pw = "pw-Options-9q"
	o := Options{Endpoints: []string{"https://etcd1:2379"}, Username: "tokend", Password: pw}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("opts", "password", o.Password, "options", o)
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), logged.String()} {
		if strings.Contains(s, pw) {
			t.Errorf("shows the password: %s", s)
		}
	}
}
